"""Move the values of a `secrets.env` into the secrets backend, and optionally rewrite the file to references.

By default the sensitive entries move (password settings and URLs carrying a password); `keys` picks entries
and `everything` takes every text setting. Each becomes secret `<prefix><key>` (lower case, `_` → `-`):
created if new, a new version if its value changed, left alone if it already is the latest value. The secrets
backend's own settings, empty values, existing references and keys that are not settings are skipped with a
reason. With `rewrite`, each imported line becomes `KEY=secret:NAME`; comments, order and other lines stay as
they were, and the file is replaced atomically with its permissions kept.
"""

from __future__ import annotations

import io
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import UnionType
from typing import Literal, Union, get_args, get_origin
from urllib.parse import urlsplit

from dotenv.parser import Binding, parse_stream
from pydantic import SecretStr

from backend.config import REFERENCE_PREFIX, Settings
from backend.errors import InvalidInput, NotFound
from backend.identity.principal import Principal
from backend.secrets.models import SecretSpec, check_name
from backend.secrets.references import BACKEND_FIELDS
from backend.secrets.service import SecretsService

ImportOutcome = Literal["created", "new-version", "unchanged"]
IMPORT_LABELS = {"source": "import-env"}


@dataclass(frozen=True)
class Imported:
    key: str
    secret: str
    version: int
    outcome: ImportOutcome


@dataclass
class ImportResult:
    imported: list[Imported] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    """(key, reason) for each entry left in the file as it was."""
    rewritten: bool = False


def _is_text(annotation: object) -> bool:
    """`str`, `SecretStr` or an optional one of them: the settings a reference can stand for."""
    options = [a for a in get_args(annotation) if a is not type(None)] if get_origin(annotation) in (
        Union, UnionType) else [annotation]
    return bool(options) and all(option in (str, SecretStr) for option in options)


def secret_name_for(key: str, prefix: str = "") -> str:
    return check_name(f"{prefix}{key.lower().replace('_', '-')}")


def is_sensitive(field_name: str, value: str) -> bool:
    """A password-typed setting, or a URL that carries a password (`postgresql://user:pw@host/db`)."""
    annotation = Settings.model_fields[field_name].annotation
    if annotation is SecretStr or SecretStr in get_args(annotation):
        return True
    try:
        return urlsplit(value).password is not None
    except ValueError:
        return False


def plan(bindings: list[Binding], keys: set[str] | None,
         everything: bool = False) -> tuple[list[Binding], list[tuple[str, str]]]:
    """Which entries to import (sensitive ones, the chosen `keys`, or every text setting), and why not the rest."""
    chosen: list[Binding] = []
    skipped: list[tuple[str, str]] = []
    for binding in bindings:
        key = binding.key
        if key is None or (keys is not None and key not in keys):
            continue
        field_name = key.lower()
        if field_name in BACKEND_FIELDS:
            skipped.append((key, "the secrets backend needs it to start"))
        elif field_name not in Settings.model_fields:
            skipped.append((key, "not a setting of this platform"))
        elif not _is_text(Settings.model_fields[field_name].annotation):
            skipped.append((key, "not a text setting"))
        elif not binding.value:
            skipped.append((key, "empty"))
        elif binding.value.startswith(REFERENCE_PREFIX):
            skipped.append((key, "already a reference"))
        elif keys is None and not everything and not is_sensitive(field_name, binding.value):
            skipped.append((key, "not sensitive (choose it with --key, or use --all)"))
        else:
            chosen.append(binding)
    if keys is not None and (unknown := keys - {b.key for b in bindings if b.key}):
        raise InvalidInput(f"not in the file: {', '.join(sorted(unknown))}")
    return chosen, skipped


def _store(service: SecretsService, actor: Principal, name: str, value: str) -> tuple[int, ImportOutcome]:
    try:
        current = service.reveal(actor, name)
    except NotFound:
        current = None
    if current is not None and current.value.get_secret_value() == value:
        return current.version, "unchanged"
    try:
        service.describe(actor, name)
    except NotFound:
        created = service.create(actor, name, SecretSpec(labels=IMPORT_LABELS), SecretStr(value))
        return created.versions[0].version, "created"
    return service.add_version(actor, name, SecretStr(value)).version, "new-version"


def read_env_file(path: Path) -> list[Binding]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InvalidInput(f"no such file: {path}") from None
    bindings = list(parse_stream(io.StringIO(text)))
    if bad := [b.original.line for b in bindings if b.error]:
        raise InvalidInput(f"{path}: cannot parse line(s) {', '.join(map(str, bad))}")
    return bindings


def import_env(
    service: SecretsService,
    actor: Principal,
    path: Path,
    *,
    prefix: str = "",
    keys: set[str] | None = None,
    everything: bool = False,
    rewrite: bool = False,
    advance: Callable[[int], None] | None = None,
) -> ImportResult:
    """Import the file's entries (as `actor`, each operation audited); `advance(1)` after each one."""
    bindings = read_env_file(path)
    chosen, skipped = plan(bindings, keys, everything)
    result = ImportResult(skipped=skipped)
    names = {b.key: secret_name_for(b.key, prefix) for b in chosen if b.key}
    for binding in chosen:
        assert binding.key is not None and binding.value is not None
        version, outcome = _store(service, actor, names[binding.key], binding.value)
        result.imported.append(Imported(binding.key, names[binding.key], version, outcome))
        if advance:
            advance(1)
    if rewrite and result.imported:
        _rewrite(path, bindings, names)
        result.rewritten = True
    return result


def _rewrite(path: Path, bindings: list[Binding], names: dict[str, str]) -> None:
    parts = []
    for binding in bindings:
        original = binding.original.string
        if binding.key in names:
            indent = original[:len(original) - len(original.lstrip())]
            parts.append(f"{indent}{binding.key}={REFERENCE_PREFIX}{names[binding.key]}\n")
        else:
            parts.append(original)
    mode = path.stat().st_mode & 0o777
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write("".join(parts))
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
