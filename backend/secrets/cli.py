"""`stream-platform secrets ...`: the service on the command line. Values come from stdin or `--from-file`,
never from arguments (they would land in shell history and `ps`)."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path

import typer
from pydantic import SecretStr
from rich.table import Table

from backend.cli_support import (
    acting_principal,
    console,
    fail,
    friendly_errors,
    print_json,
    progress_bar,
    read_secret_input,
    to_jsonable,
)
from backend.errors import InvalidInput
from backend.parsing import parse_duration, parse_labels
from backend.secrets.import_env import import_env, plan, read_env_file
from backend.secrets.models import Replication, SecretSpec, parse_version
from backend.secrets.service import SecretsService, get_service

app = typer.Typer(help="Secrets in Secret Manager or the local encrypted store (admin only, audited).",
                  no_args_is_help=True)

JSON = typer.Option(False, "--json", help="machine-readable output")
FROM_FILE = typer.Option(None, "--from-file", help="read the value from this file instead of stdin",
                         exists=True, dir_okay=False, readable=True)


def parse_time(text: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidInput(f"invalid time {text!r}: use ISO 8601, e.g. 2026-12-31T00:00:00Z") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _service() -> SecretsService:
    return get_service()


def _value(from_file: Path | None) -> SecretStr:
    return SecretStr(read_secret_input("Secret value", from_file))


def _when(value: datetime | None) -> str:
    return f"{value:%Y-%m-%d %H:%M}" if value else "-"


@app.command("list")
@friendly_errors
def list_cmd(
    label: list[str] = typer.Option([], "--label", help="only secrets with this label (key=value), repeatable"),
    page_size: int = typer.Option(100, "--page-size"),
    page_token: str = typer.Option(None, "--page-token", help="continue from a previous page"),
    as_json: bool = JSON,
) -> None:
    """Secrets with labels, replication and rotation (metadata only)."""
    page = _service().list_secrets(acting_principal(), labels=parse_labels(label), page_size=page_size,
                                   page_token=page_token)
    if as_json:
        print_json(page)
        return
    table = Table("name", "labels", "replication", "created", "expires", "next rotation")
    for meta in page.secrets:
        labels = ", ".join(f"{k}={v}" for k, v in sorted(meta.labels.items()))
        table.add_row(meta.name, labels, meta.replication.describe(), _when(meta.create_time),
                      _when(meta.expire_time), _when(meta.next_rotation_time))
    console.print(table)
    if page.next_page_token:
        console.print(f"more: --page-token {page.next_page_token}", highlight=False)


@app.command("create")
@friendly_errors
def create(
    name: str,
    label: list[str] = typer.Option([], "--label", help="key=value, repeatable"),
    location: list[str] = typer.Option([], "--location", help="user-managed replication location, repeatable "
                                                            "(default: automatic)"),
    ttl: str = typer.Option(None, "--ttl", help="delete the secret after this long, e.g. 30d"),
    expire_time: str = typer.Option(None, "--expire-time", help="delete the secret at this time (ISO 8601)"),
    rotation_period: str = typer.Option(None, "--rotation-period", help="e.g. 90d"),
    next_rotation: str = typer.Option(None, "--next-rotation", help="first rotation time (ISO 8601)"),
    topic: list[str] = typer.Option([], "--topic", help="Pub/Sub topic for rotation notices (needed on GCP)"),
    no_value: bool = typer.Option(False, "--no-value", help="create without a first version"),
    from_file: Path = FROM_FILE,
) -> None:
    """Create a secret; its first value comes from stdin or --from-file."""
    spec = SecretSpec(
        labels=parse_labels(label),
        replication=Replication(tuple(location)),
        ttl=parse_duration(ttl, what="--ttl") if ttl else None,
        expire_time=parse_time(expire_time) if expire_time else None,
        rotation_period=parse_duration(rotation_period, what="--rotation-period") if rotation_period else None,
        next_rotation_time=parse_time(next_rotation) if next_rotation else None,
        topics=tuple(topic),
    )
    value = None if no_value else _value(from_file)
    details = _service().create(acting_principal(), name, spec, value)
    suffix = f" with version {details.versions[0].version}" if details.versions else ""
    console.print(f"created secret [bold]{name}[/]{suffix}")


@app.command("describe")
@friendly_errors
def describe(name: str, as_json: bool = JSON) -> None:
    """Metadata and every version's state."""
    details = _service().describe(acting_principal(), name)
    if as_json:
        print_json(details)
        return
    meta = details.meta
    console.print(f"[bold]{meta.name}[/]  etag {meta.etag}", highlight=False)
    for key, value in (
        ("labels", ", ".join(f"{k}={v}" for k, v in sorted(meta.labels.items())) or "-"),
        ("replication", meta.replication.describe()),
        ("created", _when(meta.create_time)),
        ("expires", _when(meta.expire_time)),
        ("rotation", f"every {meta.rotation_period}, next {_when(meta.next_rotation_time)}"
         if meta.rotation_period else "-"),
    ):
        console.print(f"  {key:<12} {value}", highlight=False)
    table = Table("version", "state", "created", "destroyed")
    for version in details.versions:
        table.add_row(str(version.version), version.state, _when(version.create_time), _when(version.destroy_time))
    console.print(table)


@app.command("reveal")
@friendly_errors
def reveal(name: str, version: str = typer.Option("latest", "--version", "-v"), as_json: bool = JSON) -> None:
    """Print a version's value to stdout (admin only; audited)."""
    revealed = _service().reveal(acting_principal(), name, parse_version(version))
    if as_json:
        print_json({"secret": revealed.secret, "version": revealed.version,
                    "value": revealed.value.get_secret_value()})
        return
    sys.stdout.write(revealed.value.get_secret_value() + "\n")


@app.command("add-version")
@friendly_errors
def add_version(name: str, from_file: Path = FROM_FILE) -> None:
    """Add a version (it becomes `latest`); the value comes from stdin or --from-file."""
    created = _service().add_version(acting_principal(), name, _value(from_file))
    console.print(f"{name}: added version {created.version}")


def _state_command(action: str, help_text: str) -> None:
    @app.command(action, help=help_text)
    @friendly_errors
    def command(name: str, version: int, yes: bool = typer.Option(False, "--yes", help="do not ask")) -> None:
        if action == "destroy" and not yes:
            typer.confirm(f"Destroy version {version} of {name}? Its value is erased for good", abort=True)
        service = _service()
        call = {"enable": service.enable_version, "disable": service.disable_version,
                "destroy": service.destroy_version}[action]
        result = call(acting_principal(), name, version)
        console.print(f"{name} version {result.version}: {result.state}")


_state_command("disable", "Disable a version (it can be enabled again).")
_state_command("enable", "Enable a disabled version.")
_state_command("destroy", "Destroy a version: its value is erased for good.")


@app.command("delete")
@friendly_errors
def delete(
    name: str,
    etag: str = typer.Option(None, "--etag", help="only if the secret still has this etag"),
    yes: bool = typer.Option(False, "--yes", help="do not ask"),
) -> None:
    """Delete a secret and all its versions; asks you to type the name unless --yes."""
    if not yes:
        typed = typer.prompt(f"Type the secret's name ({name}) to delete it with all its versions")
        if typed != name:
            fail("the name did not match: nothing deleted")
    _service().delete(acting_principal(), name, etag)
    console.print(f"deleted secret [bold]{name}[/]")


@app.command("labels")
@friendly_errors
def labels(
    name: str,
    pairs: list[str] = typer.Argument(None, help="key=value to set"),
    remove: list[str] = typer.Option([], "--remove", help="label key to remove, repeatable"),
    replace: bool = typer.Option(False, "--replace", help="replace all labels instead of merging"),
    etag: str = typer.Option(None, "--etag", help="the etag you read (default: the current one, read now)"),
    as_json: bool = JSON,
) -> None:
    """Show, set or remove labels; the write is guarded by the etag (a concurrent change is refused)."""
    service, actor = _service(), acting_principal()
    meta = service.describe(actor, name).meta
    if pairs or remove or replace:
        wanted = {} if replace else dict(meta.labels)
        wanted.update(parse_labels(pairs or []))
        for key in remove:
            wanted.pop(key, None)
        meta = service.update_labels(actor, name, wanted, etag or meta.etag)
    if as_json:
        print_json({"secret": name, "labels": meta.labels, "etag": meta.etag})
        return
    for key, value in sorted(meta.labels.items()):
        console.print(f"{key}={value}", highlight=False)
    console.print(f"etag {meta.etag}", highlight=False, style="dim")


@app.command("diff")
@friendly_errors
def diff(
    name: str,
    old: str = typer.Argument(..., help="older version number"),
    new: str = typer.Argument("latest", help="newer version (default: latest)"),
    reveal_values: bool = typer.Option(False, "--reveal", help="show the changed values too"),
    as_json: bool = JSON,
) -> None:
    """Whether two versions differ and their lengths; which keys, for JSON objects and KEY=VALUE lines; values and
    changed lines only with --reveal."""
    result = _service().diff(acting_principal(), name, parse_version(old), parse_version(new),
                             reveal=reveal_values)

    def shown(value: SecretStr | None) -> str | None:
        return value.get_secret_value() if value is not None else None

    if as_json:
        print_json({**to_jsonable(result), "changes": [
            {"key": c.key, "kind": c.kind, "old": shown(c.old), "new": shown(c.new)} for c in result.changes]})
        return
    console.print(f"{name}: version {result.old_version} → {result.new_version} ({result.format}): "
                  f"{'changed' if result.changed else 'unchanged'}, {result.old_length} → {result.new_length} "
                  "characters", highlight=False)
    marks = {"added": "[green]+[/]", "removed": "[red]-[/]", "changed": "[yellow]~[/]"}
    for change in result.changes:
        values = f": {shown(change.old)!r} → {shown(change.new)!r}" if reveal_values else ""
        console.print(f"{marks[change.kind]} {change.key}{values}", highlight=False)


@app.command("rotation-due")
@friendly_errors
def rotation_due(
    within: str = typer.Option("7d", "--within", help="show what is due within this long (e.g. 30d)"),
    as_json: bool = JSON,
) -> None:
    """Secrets due (or overdue) for rotation, with the age of their latest version."""
    statuses = _service().rotation_due(acting_principal(), within=parse_duration(within, what="--within"))
    if as_json:
        print_json(statuses)
        return
    table = Table("secret", "due", "overdue", "latest version", "age", "period")
    for status in statuses:
        age = f"{status.age.days}d" if status.age is not None else "-"
        table.add_row(status.secret, _when(status.due_at), "yes" if status.overdue else "",
                      str(status.latest_version or "-"), age, str(status.rotation_period or "-"))
    console.print(table)


@app.command("audit")
@friendly_errors
def audit_cmd(
    name: str = typer.Argument(None, help="only this secret"),
    limit: int = typer.Option(50, "--limit"),
    as_json: bool = JSON,
) -> None:
    """Who did what to which secret, newest first (never values)."""
    entries = _service().audit_entries(acting_principal(), secret=name, limit=limit)
    if as_json:
        print_json(entries)
        return
    table = Table("time", "actor", "action", "secret", "version", "outcome")
    for entry in entries:
        version = entry.detail.get("version")
        table.add_row(f"{entry.at:%Y-%m-%d %H:%M:%S}", entry.actor, entry.action, entry.target or "-",
                      "-" if version is None else str(version), entry.outcome)
    console.print(table)


@app.command("import-env")
@friendly_errors
def import_env_cmd(
    path: Path = typer.Argument(..., exists=True, dir_okay=False, readable=True),
    prefix: str = typer.Option("", "--prefix", help="prepended to each secret name"),
    key: list[str] = typer.Option([], "--key", help="import this entry (repeatable; default: sensitive ones)"),
    everything: bool = typer.Option(False, "--all", help="import every text setting, not only sensitive ones"),
    rewrite: bool = typer.Option(False, "--rewrite", help="replace imported values in the file by references"),
    as_json: bool = JSON,
) -> None:
    """Move values from a secrets.env into the backend (and optionally rewrite the file to `secret:` references)."""
    keys = set(key) or None
    chosen, _ = plan(read_env_file(path), keys, everything)
    with progress_bar(f"importing {path.name}", len(chosen)) as advance:
        result = import_env(_service(), acting_principal(), path, prefix=prefix, keys=keys, everything=everything,
                            rewrite=rewrite, advance=advance)
    if as_json:
        print_json(result)
        return
    for item in result.imported:
        console.print(f"{item.key} → secret:{item.secret} (version {item.version}, {item.outcome})", highlight=False)
    for skipped_key, reason in result.skipped:
        console.print(f"[dim]skipped {skipped_key}: {reason}[/]", highlight=False)
    if result.rewritten:
        console.print(f"rewrote {path} to references")
