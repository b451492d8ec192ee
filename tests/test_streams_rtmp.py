"""End to end: real nginx + libnginx-mod-rtmp calling the real API, ffmpeg publishing, PostgreSQL behind it.

One nginx and one API serve the whole module; each test creates its own keys and clears address lockouts first.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import psycopg
import pytest
from psycopg import sql

from backend import audit
from backend.config import Settings
from backend.db import connect
from backend.embedded.ports import free_port
from backend.errors import NotFound
from backend.identity import SYSTEM
from backend.streams import attempts, keys, live, lockout, nginx, schedules, service
from backend.streams.pepper import key_pepper
from tests.nginx_rtmp import (
    UPDATE_TIMEOUT_S,
    ApiProcess,
    NginxRtmp,
    publish,
    publish_and_wait,
    tools_missing,
    wait_until,
)

pytestmark = pytest.mark.skipif(bool(tools_missing()), reason=f"needs {', '.join(tools_missing())}")
PEPPER = "integration-test-pepper-" + "p" * 32
TOKEN = "integration-callback-token-" + "c" * 32
LOCKOUT_THRESHOLD = 4


@pytest.fixture(scope="module")
def stack_database(pg_admin_url: str, template_database: str) -> Iterator[str]:
    name = f"t_streams_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(name),
                                                                      sql.Identifier(template_database)))
    yield psycopg.conninfo.make_conninfo(pg_admin_url, dbname=name)
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture(scope="module")
def stack(stack_database: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[NginxRtmp, ApiProcess]]:
    root = tmp_path_factory.mktemp("rtmp")
    api = ApiProcess(env={}, log_path=root / "api.log", access_log=True)
    server = NginxRtmp(prefix=root / "nginx", callback_url=api.url, callback_token=TOKEN)
    api.env = {"DATABASE_URL": stack_database, "STREAM_KEY_PEPPER": PEPPER, "STREAMS_CALLBACK_TOKEN": TOKEN,
               "STREAMS_NGINX_CONTROL_URL": server.control_url, "STREAMS_NGINX_STAT_URL": server.stat_url,
               "STREAMS_LOCKOUT_THRESHOLD": str(LOCKOUT_THRESHOLD), "STREAMS_DB_POOL_SIZE": "4"}
    api.start()
    server.start()
    yield server, api
    server.stop()
    api.stop()


@pytest.fixture(scope="module")
def stack_settings(stack: tuple[NginxRtmp, ApiProcess], stack_database: str) -> Settings:
    server, _ = stack
    return Settings(database_url=stack_database, stream_key_pepper=PEPPER, streams_nginx_control_url=server.control_url,
                    streams_nginx_stat_url=server.stat_url, streams_lockout_threshold=LOCKOUT_THRESHOLD)


@pytest.fixture
def conn(stack_settings: Settings) -> Iterator[psycopg.Connection]:
    with connect(stack_settings, autocommit=True) as connection:
        lockout.clear(connection, SYSTEM)
        yield connection


@pytest.fixture
def server(stack: tuple[NginxRtmp, ApiProcess]) -> NginxRtmp:
    return stack[0]


def _key(conn: psycopg.Connection, settings: Settings, stream: str, **options) -> keys.IssuedKey:
    return keys.create_key(conn, SYSTEM, key_pepper(settings), stream, **options)


def _unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def _reasons(conn: psycopg.Connection, key_id: str) -> list[str]:
    return [a.reason for a in attempts.list_attempts(conn, SYSTEM, key_id=key_id)]


def _callback(api: ApiProcess, name: str, form: dict[str, str], timeout: float = 5) -> httpx.Response:
    """POST a callback as nginx does: to the URL the rendered config names, token included."""
    return httpx.post(f"{api.url}/rtmp/{name}?token={TOKEN}", data=form, timeout=timeout)


def test_good_key_publishes_shows_live_with_stats_and_ends_cleanly(conn, server, stack_settings):
    stream = _unique("cam")
    issued = _key(conn, stack_settings, stream)
    proc = publish(server.rtmp_url(f"live/{stream}?key={issued.secret}"), seconds=5)
    assert wait_until(lambda: f"<name>{stream}</name>" in server.stat_xml(), timeout=10)
    assert wait_until(lambda: any(s.stats.get("width") == 320
                                  for s in service.live_streams(SYSTEM, settings=stack_settings)), 10)
    current = next(s for s in live.list_live(conn, SYSTEM) if s.stream == stream)
    assert current.key_id == issued.key.id and current.addr == "127.0.0.1"
    assert current.stats["video_codec"] == "H264" and current.stats["audio_codec"] == "AAC"
    assert proc.wait(20) == 0
    assert wait_until(lambda: all(s.stream != stream for s in live.list_live(conn, SYSTEM)), timeout=5)
    assert _reasons(conn, issued.key.id)[:2] == ["ended", "ok"]
    assert issued.secret not in server.stat_xml() + server.logs()


def test_the_callback_token_rides_in_the_config_and_a_wrong_one_refuses(conn, server, stack, stack_settings,
                                                                        tmp_path):
    """nginx sends the token from the rendered callback URLs; a config with another token publishes nothing, and the
    token shows in none of the logs (nginx's, the API's access log, ours)."""
    _, api = stack
    stream = _unique("tok")
    issued = _key(conn, stack_settings, stream)
    impostor = NginxRtmp(prefix=tmp_path / "nginx", callback_url=api.url, callback_token="not-the-token-" + "w" * 32)
    impostor.start()
    try:
        assert publish_and_wait(impostor.rtmp_url(f"live/{stream}?key={issued.secret}")) != 0
    finally:
        impostor.stop()
    assert _reasons(conn, issued.key.id) == []
    assert publish_and_wait(server.rtmp_url(f"live/{stream}?key={issued.secret}")) == 0
    assert _reasons(conn, issued.key.id)[-1] == "ok"
    api_log = api.log_path.read_text(errors="replace")
    assert "/rtmp/on_publish?token=[redacted]" in api_log  # the access log is on, and hides the token
    assert TOKEN not in api_log + server.logs() + impostor.logs()


def test_bad_expired_wrong_app_wrong_name_and_wrong_ip_keys_are_refused(conn, server, stack_settings):
    stream = _unique("cam")
    expired = _key(conn, stack_settings, stream, expires_in=timedelta(seconds=1))
    other_app = _key(conn, stack_settings, stream, app="studio")
    fenced = _key(conn, stack_settings, stream, allowed_cidrs=["203.0.113.0/24"])
    good = _key(conn, stack_settings, stream)
    time.sleep(1.1)
    paths = [
        f"live/{stream}?key=sk_not-a-real-key",
        f"live/{stream}?key={expired.secret}",
        f"live/{stream}?key={other_app.secret}",
        f"live/{stream}?key={fenced.secret}",
        f"live/someone-else?key={good.secret}",
    ]
    for path in paths:
        lockout.clear(conn, SYSTEM)
        assert publish_and_wait(server.rtmp_url(path)) != 0, path
    assert _reasons(conn, expired.key.id) == ["key expired"]
    assert _reasons(conn, other_app.key.id) == ["wrong application for key"]
    assert _reasons(conn, fenced.key.id) == ["address not allowed for key"]
    assert _reasons(conn, good.key.id) == ["stream name not allowed for key"]
    unknown = attempts.list_attempts(conn, SYSTEM, outcome="deny", limit=10)
    assert any(a.reason == "missing or unknown key" and a.stream == stream for a in unknown)
    assert f"<name>{stream}</name>" not in server.stat_xml()


def test_obs_style_key_as_name_is_renamed_and_the_key_never_shows(conn, server, stack_settings):
    stream = _unique("obs")
    issued = _key(conn, stack_settings, stream)
    # Longer than one notify_update_timeout: on_update must map the original name (the key) back, or nginx drops it.
    proc = publish(server.rtmp_url(f"live/{issued.secret}"), seconds=UPDATE_TIMEOUT_S + 3)
    assert wait_until(lambda: f"<name>{stream}</name>" in server.stat_xml(), timeout=10)
    assert issued.secret not in server.stat_xml()
    assert proc.wait(30) == 0, proc.stderr.read().decode() if proc.stderr else ""
    assert _reasons(conn, issued.key.id) == ["ended", "ok (renamed)"]
    leaked = conn.execute(
        """SELECT (SELECT count(*) FROM stream_auth_attempts WHERE stream LIKE %(k)s OR addr LIKE %(k)s)
                + (SELECT count(*) FROM audit_log WHERE detail::text LIKE %(k)s OR target LIKE %(k)s) AS n""",
        {"k": f"%{issued.secret}%"}).fetchone()["n"]
    assert leaked == 0
    assert issued.secret not in server.logs()


def test_revoking_a_live_key_kicks_the_publisher_at_once(conn, server, stack_settings):
    stream = _unique("cam")
    issued = _key(conn, stack_settings, stream)
    proc = publish(server.rtmp_url(f"live/{stream}?key={issued.secret}"), seconds=20)
    assert wait_until(lambda: any(s.stream == stream for s in live.list_live(conn, SYSTEM)), timeout=10)
    assert wait_until(lambda: f"<name>{stream}</name>" in server.stat_xml(), timeout=10)
    started = time.monotonic()
    revoked = service.revoke_key(SYSTEM, issued.key.id, settings=stack_settings)
    assert revoked.kicked == [f"live/{stream}"] and revoked.key.state() == "revoked"
    proc.wait(10)
    assert time.monotonic() - started < 5
    assert publish_and_wait(server.rtmp_url(f"live/{stream}?key={issued.secret}")) != 0
    assert _reasons(conn, issued.key.id)[0] == "key revoked"


def test_kick_drops_the_publisher_but_keeps_the_key(conn, server, stack_settings):
    stream = _unique("cam")
    issued = _key(conn, stack_settings, stream)
    proc = publish(server.rtmp_url(f"live/{stream}?key={issued.secret}"), seconds=20)
    assert wait_until(lambda: f"<name>{stream}</name>" in server.stat_xml(), timeout=10)
    assert service.kick(SYSTEM, stream, settings=stack_settings) == 1
    proc.wait(10)
    with pytest.raises(NotFound, match="no publisher is live"):
        service.kick(SYSTEM, stream, settings=stack_settings)
    assert keys.get_key(conn, SYSTEM, issued.key.id).state() == "active"
    assert [e.action for e in audit.entries(conn, area="streams", target=f"live/{stream}")] == ["stream.kick"]


def test_revoked_or_expired_key_is_dropped_at_the_next_update(conn, server, stack_settings):
    revoked_stream, expiring_stream = _unique("rev"), _unique("exp")
    revoked = _key(conn, stack_settings, revoked_stream)
    expiring = _key(conn, stack_settings, expiring_stream, expires_in=timedelta(seconds=2))
    first = publish(server.rtmp_url(f"live/{revoked_stream}?key={revoked.secret}"), seconds=20)
    second = publish(server.rtmp_url(f"live/{expiring.secret}"), seconds=20)
    assert wait_until(lambda: f"<name>{revoked_stream}</name>" in server.stat_xml(), timeout=10)
    started = time.monotonic()
    keys.revoke_key(conn, SYSTEM, revoked.key.id)  # no kick: on_update alone must drop it
    first.wait(UPDATE_TIMEOUT_S + 5)
    second.wait(UPDATE_TIMEOUT_S + 5)
    assert time.monotonic() - started < UPDATE_TIMEOUT_S + 5
    assert "key revoked" in _reasons(conn, revoked.key.id)
    assert "key expired" in _reasons(conn, expiring.key.id)


def test_repeated_failures_lock_the_address_out_until_cleared(conn, server, stack_settings):
    stream = _unique("cam")
    good = _key(conn, stack_settings, stream)
    for _ in range(LOCKOUT_THRESHOLD):
        assert publish_and_wait(server.rtmp_url(f"live/{stream}?key=sk_guess-{uuid.uuid4().hex}")) != 0
    assert publish_and_wait(server.rtmp_url(f"live/{stream}?key={good.secret}")) != 0
    assert attempts.list_attempts(conn, SYSTEM, limit=1)[0].reason == "address locked out"
    (state,) = lockout.list_failures(conn, SYSTEM, locked_only=True)
    assert state.addr == "127.0.0.1" and state.failures == LOCKOUT_THRESHOLD
    assert lockout.clear(conn, SYSTEM, "127.0.0.1") == 1
    assert publish_and_wait(server.rtmp_url(f"live/{stream}?key={good.secret}")) == 0


NASTY = ["x'; DROP TABLE stream_keys; --", "$(touch PWNED)", "`touch PWNED`", "<a>&amp;</a>", "../../etc/passwd",
         "a\nb", "%00", "' OR '1'='1"]


def test_injection_attempts_in_names_and_arguments_are_inert(conn, server, stack, stack_settings, tmp_path):
    _, api = stack
    issued = _key(conn, stack_settings, _unique("cam"))
    before = conn.execute("SELECT count(*) AS n FROM stream_keys").fetchone()["n"]
    for value in NASTY:
        lockout.clear(conn, SYSTEM)
        form = {"app": "live", "name": value, "addr": "127.0.0.1", "clientid": "1", "call": "publish",
                "key": value.replace("PWNED", str(tmp_path / "pwned"))}
        assert _callback(api, "on_publish", form).status_code == 403
        form["name"] = issued.secret + value
        form.pop("key")
        assert _callback(api, "on_publish", form).status_code == 403
    weird_addr = {"app": "live", "name": "x", "addr": "'; DROP TABLE x; --", "clientid": "1", "call": "publish"}
    assert _callback(api, "on_publish", weird_addr).status_code == 403
    assert publish_and_wait(server.rtmp_url("live/%3Cb%3E%27%3B--?key=%24(touch%20x)%27")) != 0
    assert conn.execute("SELECT count(*) AS n FROM stream_keys").fetchone()["n"] == before
    assert not list(tmp_path.iterdir())
    nginx.parse_stat(server.stat_xml())  # still well-formed XML


def test_play_is_allowed_only_for_live_streams(conn, stack):
    _, api = stack
    form = {"app": "live", "name": "nothing-here", "addr": "127.0.0.1", "clientid": "9", "call": "play"}
    assert _callback(api, "on_play", form).status_code == 403
    conn.execute("INSERT INTO live_streams (app, stream, addr, client_id) VALUES ('live', 'on-air', '127.0.0.1', '1')")
    assert _callback(api, "on_play", {**form, "name": "on-air"}).status_code == 200
    conn.execute("DELETE FROM live_streams WHERE stream = 'on-air'")


def test_reconciliation_removes_ghosts_that_nginx_does_not_report(conn, stack_settings):
    conn.execute("""INSERT INTO live_streams (app, stream, addr, client_id, started_at)
                    VALUES ('live', 'ghost', '127.0.0.1', '77', now() - interval '1 minute'),
                           ('live', 'just-allowed', '127.0.0.1', '78', now())""")
    result = live.refresh(conn, stack_settings)
    assert "live/ghost" in result.removed and "live/just-allowed" not in result.removed
    names = {s.stream for s in live.list_live(conn, SYSTEM)}
    assert "ghost" not in names and "just-allowed" in names
    conn.execute("DELETE FROM live_streams WHERE stream = 'just-allowed'")


def test_auth_service_down_refuses_publishing(conn, server, stack, stack_settings):
    _, api = stack
    stream = _unique("cam")
    issued = _key(conn, stack_settings, stream)
    api.stop()
    try:
        assert publish_and_wait(server.rtmp_url(f"live/{stream}?key={issued.secret}")) != 0
    finally:
        api.start()
    assert publish_and_wait(server.rtmp_url(f"live/{stream}?key={issued.secret}")) == 0


def test_callers_outside_the_allowed_networks_are_refused(conn, stack_database, tmp_path):
    """Nobody but nginx may call the callbacks: a forged `addr` could otherwise lock out someone else."""
    narrow = ApiProcess(env={"DATABASE_URL": stack_database, "STREAM_KEY_PEPPER": PEPPER,
                             "STREAMS_CALLBACK_TOKEN": TOKEN, "STREAMS_CALLBACK_ALLOWED_NETS": '["192.0.2.0/24"]'},
                        log_path=tmp_path / "api.log")
    narrow.start()
    try:
        form = {"app": "live", "name": "x", "addr": "198.51.100.9", "clientid": "1", "call": "publish", "key": "k"}
        for _ in range(LOCKOUT_THRESHOLD + 1):
            assert _callback(narrow, "on_publish", form).status_code == 403
    finally:
        narrow.stop()
    assert attempts.list_attempts(conn, SYSTEM, addr="198.51.100.9") == []
    assert lockout.list_failures(conn, SYSTEM) == []


def test_database_down_refuses_publishes_and_keeps_live_publishers(stack_settings, tmp_path: Path, server):
    """An API whose database is unreachable answers 503 (never 2xx) to a publish, which is refused; to a live
    publisher's update it answers 200: doubt never kicks, and the warning says so."""
    broken = ApiProcess(env={"DATABASE_URL": f"postgresql://nobody@127.0.0.1:{free_port()}/none?connect_timeout=1",
                             "STREAM_KEY_PEPPER": PEPPER, "STREAMS_CALLBACK_TOKEN": TOKEN},
                        log_path=tmp_path / "api.log")
    broken.start()
    try:
        form = {"app": "live", "name": "x", "addr": "127.0.0.1", "clientid": "1", "call": "publish", "key": "k"}
        assert _callback(broken, "on_publish", form, timeout=20).status_code == 503
        update = {**form, "call": "update_publish", "time": "30", "timestamp": "30000"}
        assert _callback(broken, "on_update", update, timeout=20).status_code == 200
    finally:
        broken.stop()
    logged = (tmp_path / "api.log").read_text()
    assert "rtmp /rtmp/on_update could not check the publisher" in logged and "kept until a check works" in logged
    assert "rtmp /rtmp/on_publish failed closed" in logged


def test_reconcile_and_live_commands(conn, stack_settings, stack_database, server, monkeypatch):
    from typer.testing import CliRunner

    from backend.cli import app
    from backend.config import get_settings

    for name, value in {"DATABASE_URL": stack_database, "STREAMS_NGINX_STAT_URL": server.stat_url,
                        "STREAM_KEY_PEPPER": PEPPER}.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    conn.execute("""INSERT INTO live_streams (app, stream, addr, client_id, started_at)
                    VALUES ('live', 'ghost-cli', '127.0.0.1', '79', now() - interval '1 minute')""")
    runner = CliRunner()
    try:
        result = runner.invoke(app, ["streams", "reconcile"])
        assert result.exit_code == 0 and "1 ghost(s) removed" in result.output, result.output
        listed = runner.invoke(app, ["streams", "live", "--json"])
        assert listed.exit_code == 0 and "ghost-cli" not in listed.stdout
    finally:
        get_settings.cache_clear()


def test_a_scheduled_key_publishes_only_inside_its_window(conn, server, stack_settings):
    """A window of seconds: refused before it ("outside schedule", not counted towards a lockout), accepted inside,
    and the live publisher dropped at the first on_update after the window and its grace."""
    stream = _unique("sched")
    issued = _key(conn, stack_settings, stream)
    opens = datetime.now(UTC) + timedelta(seconds=4)
    schedules.create(conn, SYSTEM, "keynote", issued.key.id, "stream-gpu-1", opens, opens + timedelta(seconds=6),
                     grace=timedelta(seconds=1))
    url = server.rtmp_url(f"live/{stream}?key={issued.secret}")
    for _ in range(LOCKOUT_THRESHOLD + 1):  # refusals of a good key out of its time never lock the address out
        assert publish_and_wait(url) != 0
    assert set(_reasons(conn, issued.key.id)) == {"outside schedule"}
    assert lockout.list_failures(conn, SYSTEM) == []

    assert wait_until(lambda: datetime.now(UTC) >= opens - timedelta(seconds=1), timeout=10)
    live_one = publish(url, seconds=30)
    assert wait_until(lambda: f"<name>{stream}</name>" in server.stat_xml(), timeout=10)
    assert live_one.wait(7 + UPDATE_TIMEOUT_S + 5) != 0  # dropped after the window, long before its 30 s
    assert datetime.now(UTC) >= opens + timedelta(seconds=7)
    calls = [(a.call, a.reason) for a in attempts.list_attempts(conn, SYSTEM, key_id=issued.key.id)]
    assert ("update_publish", "outside schedule") in calls and ("publish", "ok") in calls
    assert publish_and_wait(url) != 0
