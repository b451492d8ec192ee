"""`stream-platform`: one command, a sub-command per area. Each area owns its `cli.py` with a typer `app`."""

from __future__ import annotations

import importlib
import logging

import typer

from backend.cli_support import set_acting_name
from backend.config import get_settings

# (sub-command, module holding `app`): add a line here when an area gains a CLI.
AREAS: tuple[tuple[str, str], ...] = (
    ("db", "backend.db.cli"),
    ("users", "backend.identity.cli"),
    ("api", "backend.api.cli"),
    ("pipeline", "backend.telemetry.cli"),
    ("costs", "backend.costs.cli"),
    ("health", "backend.health.cli"),
    ("demo", "backend.demo_cli"),
    ("streams", "backend.streams.cli"),
    ("vm", "backend.vm.cli"),
    ("autoshutdown", "backend.vm.autoshutdown_cli"),
    ("secrets", "backend.secrets.cli"),
)

app = typer.Typer(
    name="stream-platform",
    help="Operations console backend for GPU-backed live-streaming and inference platforms.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


@app.callback()
def root(
    as_user: str = typer.Option(None, "--as", help="act as this user (default: the local `system` admin)"),
    log_level: str = typer.Option(None, "--log-level", help="DEBUG, INFO, WARNING or ERROR"),
) -> None:
    set_acting_name(as_user)
    logging.basicConfig(
        level=(log_level or get_settings().log_level).upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


for _name, _module in AREAS:
    app.add_typer(importlib.import_module(_module).app, name=_name)


def main() -> None:
    app()
