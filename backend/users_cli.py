"""`stream-platform users add|passwd|role|disable|enable|unlock|list`.

Above `identity` (not inside it): `cli_support`, which every area's CLI uses, resolves `--as USER` through
`identity`, so `identity` cannot import `cli_support` back.
"""

from __future__ import annotations

from datetime import UTC, datetime

import typer
from rich.table import Table

from backend.cli_support import acting_principal, console, friendly_errors, print_json, read_secret_input
from backend.db import connect
from backend.identity import users as service
from backend.identity.passwords import generate_password
from backend.identity.principal import parse_role

app = typer.Typer(help="User accounts and roles (admin, operator, viewer).", no_args_is_help=True)


def _password(generate: bool) -> tuple[str, bool]:
    """The password from stdin, or a generated one when asked or when stdin is empty."""
    value = "" if generate else read_secret_input("Password")
    return (value, False) if value else (generate_password(), True)


@app.command("add")
@friendly_errors
def add(
    name: str,
    role: str = typer.Option(..., "--role", help="admin, operator or viewer"),
    generate: bool = typer.Option(False, "--generate", help="generate a password and print it once"),
) -> None:
    """Create a user; the password comes from stdin (or is generated and printed once)."""
    parsed = parse_role(role)
    password, generated = _password(generate)
    with connect() as conn:
        user = service.add_user(conn, acting_principal(), name, parsed, password)
    console.print(f"created user [bold]{user.name}[/] with role {user.role}")
    if generated:
        console.print(f"password (shown once): {password}", highlight=False)


@app.command("passwd")
@friendly_errors
def passwd(name: str, generate: bool = typer.Option(False, "--generate")) -> None:
    """Set a user's password from stdin (or generate one and print it once)."""
    password, generated = _password(generate)
    with connect() as conn:
        service.set_password(conn, acting_principal(), name, password)
    console.print(f"password changed for [bold]{name}[/]")
    if generated:
        console.print(f"password (shown once): {password}", highlight=False)


@app.command("role")
@friendly_errors
def role(name: str, new_role: str = typer.Argument(..., metavar="ROLE")) -> None:
    """Change a user's role."""
    with connect() as conn:
        user = service.set_role(conn, acting_principal(), name, parse_role(new_role))
    console.print(f"{user.name} is now {user.role}")


@app.command("disable")
@friendly_errors
def disable(name: str) -> None:
    """Disable a user (they can no longer log in)."""
    with connect() as conn:
        service.set_disabled(conn, acting_principal(), name, True)
    console.print(f"{name} disabled")


@app.command("enable")
@friendly_errors
def enable(name: str) -> None:
    """Enable a disabled user."""
    with connect() as conn:
        service.set_disabled(conn, acting_principal(), name, False)
    console.print(f"{name} enabled")


@app.command("unlock")
@friendly_errors
def unlock(name: str) -> None:
    """Clear a login lockout."""
    with connect() as conn:
        service.unlock(conn, acting_principal(), name)
    console.print(f"{name} unlocked")


@app.command("list")
@friendly_errors
def list_cmd(as_json: bool = typer.Option(False, "--json")) -> None:
    """List users with role and state."""
    with connect() as conn:
        rows = service.list_users(conn, acting_principal())
    if as_json:
        print_json(rows)
        return
    table = Table("name", "role", "state", "last login")
    now = datetime.now(UTC)
    for user in rows:
        locked = user.locked_until is not None and user.locked_until > now
        state = "disabled" if user.disabled else (f"locked until {user.locked_until:%H:%M} UTC" if locked else "active")
        last = f"{user.last_login_at:%Y-%m-%d %H:%M}" if user.last_login_at else "-"
        table.add_row(user.name, user.role, state, last)
    console.print(table)
