"""`stream-platform db migrate|status`. Above `db` and `identity`: `migrate` also creates the first admin."""

from __future__ import annotations

import typer

from backend.cli_support import console, friendly_errors, print_json
from backend.config import get_settings
from backend.db import migrate as migrations
from backend.identity.bootstrap import bootstrap_admin

app = typer.Typer(help="Database schema: migrate and inspect.", no_args_is_help=True)


@app.command("migrate")
@friendly_errors
def migrate_cmd() -> None:
    """Apply pending migrations (idempotent); picks the timescaledb or postgres profile on first run. Then
    creates the first admin from ADMIN_PASSWORD when no admin exists yet."""
    status = migrations.migrate()
    console.print(f"profile [bold]{status.profile}[/], schema version {status.version:04d}, "
                  f"{len(status.applied)} migrations applied, {len(status.pending)} pending")
    console.print(bootstrap_admin(get_settings()).describe(), highlight=False)


@app.command("status")
@friendly_errors
def status_cmd(as_json: bool = typer.Option(False, "--json", help="print JSON")) -> None:
    """Which profile the database uses and which migrations are applied or pending."""
    status = migrations.status()
    if as_json:
        print_json({"profile": status.profile, "version": status.version, "applied": status.applied,
                    "pending": status.pending})
        return
    console.print(f"profile: [bold]{status.profile}[/]")
    console.print(f"schema version: {status.version:04d}")
    for version, slug in status.pending:
        console.print(f"pending: {version:04d}_{slug}")
