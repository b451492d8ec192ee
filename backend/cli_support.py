"""What every area's CLI shares: the acting principal, one-line errors, JSON output and progress bars."""

from __future__ import annotations

import inspect
import json
import logging
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import MISSING, asdict, fields, is_dataclass
from datetime import date, datetime
from enum import Enum
from functools import wraps
from pathlib import Path
from typing import Any, NoReturn, TypeVar, get_type_hints

import psycopg
import typer
from pydantic import BaseModel
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from backend.config import get_settings
from backend.db import connect
from backend.errors import PlatformError
from backend.identity.principal import SYSTEM, PermissionDenied, Principal
from backend.identity.users import resolve_principal

console = Console(soft_wrap=True)  # lines stay whole in pipes and logs (paths, keys, tokens)
err_console = Console(stderr=True, soft_wrap=True)  # one error = one line, whatever the width
log = logging.getLogger("backend.cli")
F = TypeVar("F", bound=Callable[..., Any])


def fail(message: str, code: int = 2) -> NoReturn:
    """Print one clear line and exit; never a stack trace for a user's mistake."""
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, markup=True)
    raise typer.Exit(code)


def friendly_errors(func: F) -> F:
    """Turn user-facing errors into one line on stderr and exit status 2."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except (PlatformError, PermissionDenied) as exc:
            fail(str(exc))
        except psycopg.OperationalError as exc:  # the database is down or refuses us: say so, no traceback
            first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            fail(f"the database cannot be reached: {first_line}")

    return wrapper  # type: ignore[return-value]


def with_options(options: type[Any]) -> Callable[[F], F]:
    """Declare typer options once, as the fields of a dataclass (`Annotated[T, typer.Option(...)]`), for every
    command that takes them: typer sees the fields as the command's first options, in field order, and the command
    gets them gathered into one `options` instance as its first argument."""
    hints = get_type_hints(options, include_extras=True)
    shared = [inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, annotation=hints[f.name],
                                default=inspect.Parameter.empty if f.default is MISSING else f.default)
              for f in fields(options)]

    def decorate(command: F) -> F:
        own = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY)
               for p in list(inspect.signature(command, eval_str=True).parameters.values())[1:]]

        @wraps(command)
        def wrapper(**given: Any) -> Any:
            return command(options(**{p.name: given.pop(p.name) for p in shared}), **given)

        wrapper.__signature__ = inspect.Signature([*shared, *own])  # type: ignore[attr-defined]
        wrapper.__annotations__ = {p.name: p.annotation for p in (*shared, *own)}
        return wrapper  # type: ignore[return-value]

    return decorate


_acting_name: ContextVar[str | None] = ContextVar("acting_name", default=None)


def set_acting_name(name: str | None) -> None:
    """Called by the root command with `--as USER`."""
    _acting_name.set(name)


def acting_principal() -> Principal:
    """Resolve `--as USER` against the users table; the local `system` admin without it."""
    name = _acting_name.get()
    if name is None:
        return SYSTEM
    with connect(get_settings()) as conn:
        return resolve_principal(conn, name)


def to_jsonable(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if is_dataclass(value) and not isinstance(value, type):
        return to_jsonable(asdict(value))
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [to_jsonable(v) for v in value]
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, Path):
        return str(value)
    return value


def print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(to_jsonable(value), indent=2, default=str) + "\n")


@contextmanager
def progress_bar(description: str, total: int | None) -> Iterator[Callable[[int], None]]:
    """A rich progress bar on stderr; yields `advance(n)`."""
    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()]
    with Progress(*columns, console=err_console, transient=False) as progress:
        task = progress.add_task(description, total=total)
        yield lambda n=1: progress.advance(task, n)


def read_secret_input(prompt: str, source: Path | None = None) -> str:
    """A value from a file, or from stdin (prompted without echo on a terminal); never from argv."""
    if source is not None:
        return source.read_text(encoding="utf-8").rstrip("\n")
    if sys.stdin.isatty():
        return typer.prompt(prompt, hide_input=True, confirmation_prompt=True)
    return sys.stdin.read().rstrip("\n")
