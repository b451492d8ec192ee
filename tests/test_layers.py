"""The layers the import linter cannot see, and imports it would not see.

Pages are scripts Streamlit runs, not a package, so `.importlinter` (checked by `make lint`) cannot follow them:
pages → app components → backend services is checked here, by reading each file's imports. A module imported by a
string (`importlib.import_module("backend....")`) is invisible to both, so that is refused everywhere.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = sorted((ROOT / "pages").glob("*.py"))
CONSOLE = sorted((ROOT / "app").rglob("*.py"))
BACKEND = sorted((ROOT / "backend").rglob("*.py"))

PAGE_LIBRARIES = {"streamlit", "pandas", "plotly"}
PAGE_BACKEND = {
    # the services: pages call only these
    "backend.costs.service", "backend.health.service", "backend.queries.service", "backend.secrets.service",
    "backend.streams.service", "backend.vm.service", "backend.telemetry.pipeline_status", "backend.telemetry.archive",
    # values pages show, parse or catch
    "backend.config", "backend.errors", "backend.identity.principal", "backend.parsing", "backend.secrets.models",
    "backend.costs.catalog", "backend.queries.timeseries", "backend.telemetry.fields",
}
# `importlib.resources` and `importlib.metadata` read package data; they import no module.
DATA_ONLY = {"resources", "metadata"}


def _is_module(name: str) -> bool:
    """Whether `name` is one of ours (`components` lives in app/, on the console's sys.path)."""
    for base in (ROOT, ROOT / "app"):
        path = base.joinpath(*name.split("."))
        if path.with_suffix(".py").is_file() or (path / "__init__.py").is_file():
            return True
    return False


def imports_of(path: Path) -> set[str]:
    """Every module a file imports; `from package import module` counts as the module."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            for alias in node.names:
                child = f"{node.module}.{alias.name}"
                found.add(child if _is_module(child) else node.module)
    return found


def _allowed_in_page(module: str) -> bool:
    top = module.partition(".")[0]
    if top in sys.stdlib_module_names or top == "__future__" or top in PAGE_LIBRARIES:
        return True
    if top == "components":
        return _is_module(module)
    return module in PAGE_BACKEND


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_pages_import_only_components_and_backend_services(page: Path) -> None:
    refused = sorted(m for m in imports_of(page) if not _allowed_in_page(m))
    assert refused == [], f"{page.name} may render only: call a service instead of importing {refused}"


def test_the_page_allow_list_is_exact() -> None:
    used = set().union(*(imports_of(page) for page in PAGES))
    assert sorted(PAGE_BACKEND - used) == [], "no page imports these any more: drop them from PAGE_BACKEND"
    assert all(_is_module(m) for m in PAGE_BACKEND)


@pytest.mark.parametrize("component", CONSOLE, ids=lambda p: str(p.relative_to(ROOT)))
def test_app_components_import_no_page(component: Path) -> None:
    pages = {f"pages.{p.stem}" for p in PAGES} | {p.stem for p in PAGES} | {"pages"}
    assert sorted(imports_of(component) & pages) == []


def _string_imports(path: Path) -> list[str]:
    """Lines that can import a module by name: `importlib` (but its data readers) and `__import__`."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found += [f"line {node.lineno}: import {a.name}" for a in node.names if a.name.startswith("importlib")]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("importlib"):
            found += [f"line {node.lineno}: from {node.module} import {a.name}" for a in node.names
                      if node.module != "importlib" or a.name not in DATA_ONLY]
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "__import__":
            found.append(f"line {node.lineno}: __import__")
    return found


@pytest.mark.parametrize("source", [*CONSOLE, *PAGES, *BACKEND], ids=lambda p: str(p.relative_to(ROOT)))
def test_no_module_is_imported_by_a_string(source: Path) -> None:
    hidden = _string_imports(source)
    assert hidden == [], "import the module with an import statement, so the import graph shows it"
