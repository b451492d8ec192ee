"""`stream-platform api tokens create|list|revoke`: bearer tokens for the REST API."""

from __future__ import annotations

import typer
from rich.table import Table

from backend.api import tokens as service
from backend.cli_support import acting_principal, console, friendly_errors, print_json
from backend.db import connect
from backend.identity.principal import parse_role

app = typer.Typer(help="Bearer API tokens (viewer, operator, admin); the secret is shown once.", no_args_is_help=True)


@app.command("create")
@friendly_errors
def create(
    role: str = typer.Option(..., "--role", help="viewer, operator or admin"),
    name: str = typer.Option(..., "--name", help="who or what uses it, e.g. grafana or ci-deploy"),
    expires_in_days: int = typer.Option(None, "--expires-in-days", min=1, help="default: never expires"),
) -> None:
    """Issue a token and print it once; only its hash is stored."""
    parsed = parse_role(role)
    with connect() as conn:
        issued = service.create_token(conn, acting_principal(), name, parsed, expires_in_days=expires_in_days)
    console.print(f"created API token [bold]{issued.token.name}[/] ({issued.token.role}); copy it now, "
                  "it is not shown again:", highlight=False)
    typer.echo(issued.value)


@app.command("list")
@friendly_errors
def list_cmd(
    include_revoked: bool = typer.Option(False, "--all", help="include revoked tokens"),
    as_json: bool = typer.Option(False, "--json", help="print JSON"),
) -> None:
    """List tokens (never their secrets)."""
    with connect() as conn:
        rows = service.list_tokens(conn, acting_principal(), include_revoked=include_revoked)
    if as_json:
        print_json(rows)
        return
    table = Table("name", "role", "key id", "created", "expires", "last used", "state")
    for t in rows:
        table.add_row(
            t.name, t.role, t.key_id, f"{t.created_at:%Y-%m-%d %H:%M} by {t.created_by}",
            f"{t.expires_at:%Y-%m-%d}" if t.expires_at else "never",
            f"{t.last_used_at:%Y-%m-%d %H:%M}" if t.last_used_at else "-",
            "revoked" if t.revoked_at else "live",
        )
    console.print(table)


@app.command("revoke")
@friendly_errors
def revoke(name: str) -> None:
    """Revoke the live token called NAME; requests with it fail from now on."""
    with connect() as conn:
        token = service.revoke_token(conn, acting_principal(), name)
    console.print(f"revoked API token [bold]{token.name}[/] (key id {token.key_id})")
