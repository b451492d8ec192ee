"""`stream-platform streams keys create|list|revoke|rotate`, `live`, `reconcile`, `kick`, `audit`,
`prune-attempts`, `lockouts`, `nginx-config`, `check-config`, `schedule add|list|cancel`."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime
from pathlib import Path

import typer
from rich.table import Table

from backend.cli_support import acting_principal, console, fail, friendly_errors, print_json, to_jsonable
from backend.config import get_settings
from backend.parsing import parse_duration, parse_labels
from backend.streams import keys, nginx_config, schedules, service
from backend.streams.pepper import callback_token

app = typer.Typer(help="RTMP stream keys, live streams, publish attempts and the nginx-rtmp config.",
                  no_args_is_help=True)
keys_app = typer.Typer(help="Stream keys: create (shown once), list, revoke, rotate.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")


def _when(value: datetime | None) -> str:
    return f"{value:%Y-%m-%d %H:%M}" if value else "-"


def _show_issued(issued: keys.IssuedKey, as_json: bool, verb: str) -> None:
    key = issued.key
    if as_json:
        print_json({"key": issued.secret, **keys_json(key)})
        return
    console.print(f"{verb} key [bold]{key.id}[/] for {key.app}/{key.stream}"
                  + (f", expires {_when(key.expires_at)} UTC" if key.expires_at else ""))
    console.print("stream key (shown once, store it now):", highlight=False)
    console.print(issued.secret, highlight=False, soft_wrap=True)
    console.print(f"publish to rtmp://HOST/{key.app}/{key.stream}?key=KEY, or use the key as the stream name",
                  highlight=False)


def keys_json(key: keys.StreamKey) -> dict:
    return {"id": key.id, "stream": key.stream, "app": key.app, "key_prefix": key.key_prefix, "state": key.state(),
            "allowed_cidrs": list(key.allowed_cidrs), "owner": key.owner, "labels": key.labels,
            "expires_at": key.expires_at, "revoked_at": key.revoked_at, "replaced_by": key.replaced_by,
            "created_at": key.created_at, "created_by": key.created_by, "last_used_at": key.last_used_at}


@keys_app.command("create")
@friendly_errors
def create(
    stream: str = typer.Argument(..., metavar="NAME", help="the public stream name the key may publish"),
    app_name: str = typer.Option("live", "--app", help="nginx-rtmp application"),
    expires: str = typer.Option(None, "--expires", help="lifetime, e.g. 12h, 7d, 2w (default: no expiry)"),
    allow_ip: list[str] = typer.Option([], "--allow-ip", help="address or CIDR allowed to publish (repeatable)"),
    owner: str = typer.Option(None, "--owner", help="who the key belongs to"),
    label: list[str] = typer.Option([], "--label", help="name=value (repeatable)"),
    as_json: bool = typer.Option(False, "--json", help="print JSON (includes the key)"),
) -> None:
    """Create a stream key and print it once."""
    expires_in = parse_duration(expires, what="--expires") if expires else None
    labels = parse_labels(label)
    issued = service.create_key(acting_principal(), stream, app=app_name, expires_in=expires_in,
                                allowed_cidrs=allow_ip, owner=owner, labels=labels)
    _show_issued(issued, as_json, "created")


@keys_app.command("list")
@friendly_errors
def list_cmd(
    show_all: bool = typer.Option(False, "--all", help="include revoked and expired keys"),
    as_json: bool = typer.Option(False, "--json", help="print JSON"),
) -> None:
    """List stream keys (metadata only: keys are never stored)."""
    rows = service.list_keys(acting_principal(), include_inactive=show_all)
    if as_json:
        print_json([keys_json(k) for k in rows])
        return
    table = Table("id", "stream", "prefix", "state", "expires", "allowed", "owner", "last used")
    for key in rows:
        table.add_row(key.id, f"{key.app}/{key.stream}", key.key_prefix + "…", key.state(), _when(key.expires_at),
                      ", ".join(key.allowed_cidrs) or "any", key.owner or "-", _when(key.last_used_at))
    console.print(table)


@keys_app.command("revoke")
@friendly_errors
def revoke(key_id: str = typer.Argument(..., metavar="ID")) -> None:
    """Revoke a key and kick its live publisher."""
    revoked = service.revoke_key(acting_principal(), key_id)
    key, kicked = revoked.key, revoked.kicked
    console.print(f"revoked {key.id} ({key.app}/{key.stream})" + (f"; kicked {', '.join(kicked)}" if kicked else ""))


@keys_app.command("rotate")
@friendly_errors
def rotate(key_id: str = typer.Argument(..., metavar="ID"),
           as_json: bool = typer.Option(False, "--json", help="print JSON (includes the new key)")) -> None:
    """Replace a key with a new one (same stream and limits); the old key stops working at once."""
    rotated = service.rotate_key(acting_principal(), key_id)
    _show_issued(rotated.issued, as_json, f"replaced {key_id} with")
    if rotated.kicked and not as_json:
        console.print(f"kicked {', '.join(rotated.kicked)} (still on the old key)")


@app.command("live")
@friendly_errors
def live_cmd(as_json: bool = typer.Option(False, "--json", help="print JSON")) -> None:
    """Streams being published now, reconciled with nginx's /stat when STREAMS_NGINX_STAT_URL is set."""
    rows = service.live_streams(acting_principal())
    if as_json:
        print_json(rows)
        return
    table = Table("stream", "key", "owner", "from", "since", "kbit/s", "video", "fps", "clients")
    for s in rows:
        st = s.stats
        video = f"{st.get('video_codec') or '?'} {st.get('width') or '?'}x{st.get('height') or '?'}" if st else "-"
        table.add_row(f"{s.app}/{s.stream}", s.key_id or "-", s.owner or "-", s.addr, _when(s.started_at),
                      f"{st['bw_in_kbps']:.0f}" if st else "-", video, str(st.get("frame_rate") or "-"),
                      str(st.get("clients", "-")))
    console.print(table)


@app.command("reconcile")
@friendly_errors
def reconcile_cmd(every: float = typer.Option(None, "--every", min=1, help="repeat every N seconds until stopped")
                  ) -> None:
    """Reconcile the live registry with nginx's /stat (stats in, ghosts out); once, or as a loop."""
    while True:
        result = service.reconcile(acting_principal())
        console.print(f"{len(result.updated)} live, {len(result.removed)} ghost(s) removed"
                      + (f", unregistered: {', '.join(result.unregistered)}" if result.unregistered else ""))
        if every is None:
            return
        time.sleep(every)


@app.command("prune-attempts")
@friendly_errors
def prune_attempts_cmd(older_than: str = typer.Option("90d", "--older-than", help="e.g. 30d")) -> None:
    """Delete publish attempts older than the given age (admin)."""
    deleted = service.prune_attempts(acting_principal(), parse_duration(older_than, what="--older-than"))
    console.print(f"deleted {deleted} attempt(s) older than {older_than}")


@app.command("kick")
@friendly_errors
def kick(stream: str = typer.Argument(..., metavar="NAME"),
         app_name: str = typer.Option("live", "--app", help="nginx-rtmp application")) -> None:
    """Drop a live publisher now (its key stays valid: revoke the key to keep it out)."""
    dropped = service.kick(acting_principal(), stream, app=app_name)
    console.print(f"kicked {app_name}/{stream} ({dropped} client(s) dropped)")


@app.command("audit")
@friendly_errors
def audit_cmd(
    key_id: str = typer.Option(None, "--key", help="only this key id"),
    addr: str = typer.Option(None, "--addr", help="only this client address"),
    outcome: str = typer.Option(None, "--outcome", help="allow, deny or error"),
    limit: int = typer.Option(50, "--limit", min=1, max=10_000),
    as_json: bool = typer.Option(False, "--json", help="print JSON"),
) -> None:
    """Publish attempts, newest first: time, address, stream, key, outcome and reason."""
    if outcome not in (None, "allow", "deny", "error"):
        fail(f"invalid --outcome {outcome!r}: choose allow, deny or error")
    rows = service.list_attempts(acting_principal(), key_id=key_id, addr=addr, outcome=outcome, limit=limit)
    if as_json:
        print_json(rows)
        return
    table = Table("time", "call", "address", "stream", "key", "outcome", "reason")
    for a in rows:
        colour = {"allow": "green", "deny": "red"}.get(a.outcome, "yellow")
        table.add_row(f"{a.at:%Y-%m-%d %H:%M:%S}", a.call, a.addr, f"{a.app}/{a.stream}", a.key_id or "-",
                      f"[{colour}]{a.outcome}[/]", a.reason)
    console.print(table)


@app.command("lockouts")
@friendly_errors
def lockouts(
    clear: str = typer.Option(None, "--clear", metavar="ADDR", help="forget this address's failures"),
    clear_all: bool = typer.Option(False, "--clear-all", help="forget every address's failures"),
    as_json: bool = typer.Option(False, "--json", help="print JSON"),
) -> None:
    """Addresses with recent failed publish attempts and their lockouts; clear them."""
    if clear or clear_all:
        cleared = service.clear_lockout(acting_principal(), None if clear_all else clear)
        console.print(f"cleared {cleared} address(es)")
        return
    rows = service.list_failures(acting_principal())
    if as_json:
        print_json(rows)
        return
    table = Table("address", "failures", "first", "last", "locked until")
    for f in rows:
        table.add_row(f.addr, str(f.failures), _when(f.first_failed_at), _when(f.last_failed_at),
                      _when(f.locked_until))
    console.print(table)


@app.command("nginx-config")
@friendly_errors
def nginx_config_cmd(
    prefix: Path = typer.Option(Path("/var/lib/nginx"), "--prefix", help="an existing directory nginx may write to"),
    callback_url: str = typer.Option(None, "--callback-url", help="the API's http:// base (default API_BASE_URL)"),
    rtmp_listen: str = typer.Option("1935", "--rtmp-listen", help="RTMP listen address"),
    http_listen: str = typer.Option("127.0.0.1:8088", "--http-listen", help="address for /stat and /control"),
    stat_allow: list[str] = typer.Option(["127.0.0.1"], "--stat-allow",
                                         help="private network allowed to use /stat and /control (repeatable)"),
    error_log: str = typer.Option(None, "--error-log", help="file or `stderr` (default PREFIX/error.log)"),
    app_name: str = typer.Option("live", "--app", help="nginx-rtmp application"),
    update_timeout: str = typer.Option("30s", "--update-timeout", help="on_update interval"),
    play_control: bool = typer.Option(False, "--play-control", help="call on_play: only live streams play"),
    foreground: bool = typer.Option(False, "--foreground", help="write `daemon off;` into the file (else pass it "
                                    "with -g, as containers do)"),
    output: Path = typer.Option(None, "--output", "-o", help="write here instead of stdout"),
) -> None:
    """Render the nginx-rtmp config; run it with `nginx -c FILE -g "daemon off;"` (or render with --foreground).

    The callback URLs carry the callback token (STREAMS_CALLBACK_TOKEN, else the secrets backend's), so the file is
    written readable by its owner only."""
    settings = get_settings()
    text = nginx_config.render(nginx_config.RenderOptions(
        prefix=prefix, callback_token=callback_token(settings), callback_url=callback_url or settings.api_base_url,
        rtmp_listen=rtmp_listen, http_listen=http_listen, stat_allow=tuple(stat_allow), error_log=error_log,
        app=app_name, update_timeout=update_timeout, play_control=play_control, foreground=foreground))
    if output is None:
        typer.echo(text, nl=False)
        return
    with os.fdopen(os.open(output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w", encoding="utf-8") as file:
        os.fchmod(file.fileno(), 0o600)  # an existing file keeps its mode through O_CREAT
        file.write(text)
    console.print(f"wrote {output}")


@app.command("check-config")
@friendly_errors
def check_config_cmd(file: Path = typer.Argument(..., exists=True, dir_okay=False, readable=True),
                     as_json: bool = typer.Option(False, "--json", help="print JSON")) -> None:
    """Warn about nginx settings that weaken stream auth; exits 1 when any error-level finding is present."""
    findings = nginx_config.check_config(file.read_text(encoding="utf-8"))
    if as_json:
        print_json(findings)
    elif not findings:
        console.print(f"{file}: no problems found")
    for f in findings if not as_json else ():
        colour = "red" if f.level == "error" else "yellow"
        console.print(f"{file}:{f.line}: [{colour}]{f.level}[/]: {f.message}", highlight=False, soft_wrap=True)
    if any(f.level == "error" for f in findings):
        raise typer.Exit(1)


schedule_app = typer.Typer(help="Scheduled streams: a key valid only inside its window ± grace, its VM started "
                                "ahead (`vm start-scheduled`).", no_args_is_help=True)
app.add_typer(schedule_app, name="schedule")


@schedule_app.command("add")
@friendly_errors
def schedule_add(
    name: str = typer.Argument(..., help="what is streamed, e.g. 'Friday keynote'"),
    key_id: str = typer.Option(..., "--key", help="the stream key's id (streams keys list)"),
    vm: str = typer.Option(..., "--vm", help="the VM whose nginx-rtmp carries the stream"),
    start: str = typer.Option(..., "--start", help="ISO 8601 (UTC unless an offset is given) or +DURATION"),
    end: str | None = typer.Option(None, "--end", help="ISO 8601 or +DURATION (from now)"),
    duration: str | None = typer.Option(None, "--duration", help="instead of --end: e.g. 90m"),
    grace: str = typer.Option("0s", "--grace", help="the key also works this long before and after, e.g. 5m"),
    zone: str | None = typer.Option(None, "--zone", help="the VM's zone (default: GCP_ZONE, else looked up)"),
    as_json: bool = typer.Option(False, "--json", help="print JSON"),
) -> None:
    """Schedule a stream (operator+, audited)."""
    if (end is None) == (duration is None):
        fail("give exactly one of --end and --duration")
    now = datetime.now(UTC)
    starts_at = schedules.parse_when(start, now)
    ends_at = schedules.parse_when(end, now) if end else starts_at + parse_duration(duration or "", what="--duration")
    made = service.schedule_stream(acting_principal(), name, key_id, vm, starts_at, ends_at,
                                   grace=parse_duration(grace, what="--grace", allow_zero=True), zone=zone)
    if as_json:
        print_json(made)
        return
    console.print(f"scheduled {made.id}: {made.name!r} on {made.vm}, {made.app}/{made.stream} "
                  f"{made.starts_at:%Y-%m-%d %H:%M:%S}–{made.ends_at:%H:%M:%S} UTC ± {made.grace}", highlight=False)


@schedule_app.command("list")
@friendly_errors
def schedule_list(
    show_all: bool = typer.Option(False, "--all", help="include past and cancelled schedules"),
    vm: str | None = typer.Option(None, "--vm", help="only this VM's"),
    as_json: bool = typer.Option(False, "--json", help="print JSON"),
) -> None:
    """Scheduled streams by start time."""
    rows = service.list_schedules(acting_principal(), include_past=show_all, vm=vm)
    if as_json:
        print_json([to_jsonable(s) | {"state": s.state()} for s in rows])
        return
    table = Table("id", "name", "stream", "VM", "window (UTC)", "grace", "state", "VM start")
    for s in rows:
        started = _when(s.vm_started_at) if s.vm_started_at else (f"error: {s.vm_start_error}" if s.vm_start_error
                                                                    else "pending")
        table.add_row(str(s.id), s.name, f"{s.app}/{s.stream}", s.vm,
                      f"{s.starts_at:%Y-%m-%d %H:%M}–{s.ends_at:%H:%M}", str(s.grace), s.state(), started)
    console.print(table)


@schedule_app.command("cancel")
@friendly_errors
def schedule_cancel(schedule_id: int = typer.Argument(..., metavar="ID")) -> None:
    """Cancel a scheduled stream (operator+, audited): the key no longer opens in that window."""
    cancelled = service.cancel_schedule(acting_principal(), schedule_id)
    console.print(f"cancelled schedule {cancelled.id} ({cancelled.name})", highlight=False)
