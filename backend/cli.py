"""`stream-platform`: one command, a sub-command per area. Each area owns its `cli.py` with a typer `app`; the CLIs
of the foundations other CLIs build on (`db`, `users`, `api`) and of the demo sit at the top level, beside this one.
"""

from __future__ import annotations

import logging

import typer

from backend import api_cli, db_cli, demo_cli, settings_loader, users_cli
from backend.cli_support import set_acting_name
from backend.config import get_settings
from backend.costs import cli as costs_cli
from backend.health import cli as health_cli
from backend.secrets import cli as secrets_cli
from backend.streams import cli as streams_cli
from backend.telemetry import cli as telemetry_cli
from backend.vm import autoshutdown_cli
from backend.vm import cli as vm_cli

# (sub-command, typer app): add a line here when an area gains a CLI.
AREAS: tuple[tuple[str, typer.Typer], ...] = (
    ("db", db_cli.app),
    ("users", users_cli.app),
    ("api", api_cli.app),
    ("pipeline", telemetry_cli.app),
    ("costs", costs_cli.app),
    ("health", health_cli.app),
    ("demo", demo_cli.app),
    ("streams", streams_cli.app),
    ("vm", vm_cli.app),
    ("autoshutdown", autoshutdown_cli.app),
    ("secrets", secrets_cli.app),
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
    settings_loader.install()
    set_acting_name(as_user)
    logging.basicConfig(
        level=(log_level or get_settings().log_level).upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


for _name, _app in AREAS:
    app.add_typer(_app, name=_name)


def main() -> None:
    app()
