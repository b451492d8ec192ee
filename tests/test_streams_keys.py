"""Stream keys, the pepper, the lockout policy and the streams CLI, against a real PostgreSQL."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from pydantic import SecretStr
from typer.testing import CliRunner

from backend import audit, backoff
from backend.api_app import create_app
from backend.cli import app
from backend.config import Settings
from backend.errors import ConfigError, InvalidInput, NotFound
from backend.identity import SYSTEM, PermissionDenied, Principal, Role
from backend.identity import users as user_service
from backend.streams import attempts, keys, lockout
from backend.streams.callbacks import CallbackGate, CallbackRequest, KeyRecord, check_key
from backend.streams.pepper import callback_token, hash_key, key_pepper

PEPPER = b"unit-test-pepper-" + b"q" * 32
OPERATOR = Principal("olga", Role.operator)
VIEWER = Principal("victor", Role.viewer)


def test_created_key_is_random_shown_once_and_stored_only_as_hmac(db):
    issued = keys.create_key(db, OPERATOR, PEPPER, "cam1", owner="news desk", labels={"team": "news"})
    other = keys.create_key(db, OPERATOR, PEPPER, "cam1")
    assert issued.secret.startswith("sk_") and len(issued.secret) >= 43 and issued.secret != other.secret
    assert issued.secret not in repr(issued)
    row = db.execute("SELECT * FROM stream_keys WHERE id = %s", (issued.key.id,)).fetchone()
    assert bytes(row["key_hash"]) == hmac.new(PEPPER, issued.secret.encode(), hashlib.sha256).digest()
    assert issued.secret not in json.dumps(row, default=str)
    assert row["key_prefix"] == issued.secret[:8]
    (entry,) = [e for e in audit.entries(db, area="streams") if e.target == issued.key.id]
    assert entry.actor == "olga" and entry.action == "key.create"
    assert issued.secret not in json.dumps(entry.detail)


def test_viewers_list_but_only_operators_manage_keys(db):
    with pytest.raises(PermissionDenied, match="needs role operator"):
        keys.create_key(db, VIEWER, PEPPER, "cam1")
    issued = keys.create_key(db, OPERATOR, PEPPER, "cam1")
    assert [k.id for k in keys.list_keys(db, VIEWER)] == [issued.key.id]
    with pytest.raises(PermissionDenied):
        keys.revoke_key(db, VIEWER, issued.key.id)
    with pytest.raises(PermissionDenied):
        lockout.clear(db, VIEWER)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"stream": "bad name"}, "invalid stream name 'bad name'"),
    ({"stream": "../etc"}, "invalid stream name"),
    ({"stream": "cam", "app": "live/x"}, "invalid application"),
    ({"stream": "cam", "allowed_cidrs": ["10.0.0.0/8", "not-an-ip"]}, "invalid --allow-ip 'not-an-ip'"),
])
def test_invalid_key_options_are_explained(db, kwargs, message):
    with pytest.raises(InvalidInput, match=message):
        keys.create_key(db, OPERATOR, PEPPER, **kwargs)
    assert keys.list_keys(db, OPERATOR, include_inactive=True) == []


def test_cidrs_are_normalised_and_expiry_is_kept(db):
    issued = keys.create_key(db, OPERATOR, PEPPER, "cam1", allowed_cidrs=["10.1.2.3/8", "2001:db8::1"],
                             expires_in=timedelta(days=7))
    assert issued.key.allowed_cidrs == ("10.0.0.0/8", "2001:db8::1/128")
    assert timedelta(days=6, hours=23) < issued.key.expires_at - datetime.now(UTC) <= timedelta(days=7)


def test_revoke_and_rotate(db):
    issued = keys.create_key(db, OPERATOR, PEPPER, "cam1", allowed_cidrs=["192.0.2.0/24"], owner="ops",
                             expires_in=timedelta(hours=1))
    rotated = keys.rotate_key(db, OPERATOR, PEPPER, issued.key.id)
    old = keys.get_key(db, OPERATOR, issued.key.id)
    assert old.state() == "revoked" and old.replaced_by == rotated.key.id and old.revoked_by == "olga"
    assert rotated.secret != issued.secret
    assert (rotated.key.stream, rotated.key.allowed_cidrs, rotated.key.owner) == ("cam1", ("192.0.2.0/24",), "ops")
    assert rotated.key.expires_at <= issued.key.expires_at
    with pytest.raises(InvalidInput, match="already revoked"):
        keys.revoke_key(db, OPERATOR, issued.key.id)
    with pytest.raises(InvalidInput, match="is revoked"):
        keys.rotate_key(db, OPERATOR, PEPPER, issued.key.id)
    with pytest.raises(NotFound):
        keys.revoke_key(db, OPERATOR, "key_missing")
    assert [k.id for k in keys.list_keys(db, OPERATOR)] == [rotated.key.id]
    assert {e.action for e in audit.entries(db, area="streams")} >= {"key.create", "key.rotate"}


def _record(stream="cam1", app="live", cidrs=(), expires=None, revoked=None, presented="sk_x"):
    return KeyRecord("key_1", stream, app, hash_key(PEPPER, presented), cidrs, expires, revoked)


def _req(name="cam1", key="sk_x", app="live", addr="127.0.0.1"):
    return CallbackRequest("publish", app, name, addr, "1", key)


@pytest.mark.parametrize(("record", "req", "outcome", "reason"), [
    (_record(), _req(), "allow", "ok"),
    (_record(), _req(name="sk_x", key=None), "allow", "ok (renamed)"),
    (None, _req(), "deny", "missing or unknown key"),
    (_record(presented="sk_other"), _req(), "deny", "missing or unknown key"),
    (_record(revoked=datetime(2026, 1, 1, tzinfo=UTC)), _req(), "deny", "key revoked"),
    (_record(expires=datetime(2026, 1, 1, tzinfo=UTC)), _req(), "deny", "key expired"),
    (_record(app="studio"), _req(), "deny", "wrong application for key"),
    (_record(), _req(name="other"), "deny", "stream name not allowed for key"),
    (_record(cidrs=("10.0.0.0/8",)), _req(), "deny", "address not allowed for key"),
    (_record(cidrs=("10.0.0.0/8",)), _req(addr="10.9.8.7"), "allow", "ok"),
])
def test_key_decisions(record, req, outcome, reason):
    decision = check_key(req, record, hash_key(PEPPER, req.presented_key), datetime(2026, 6, 1, tzinfo=UTC))
    assert (decision.outcome, decision.reason) == (outcome, reason)
    if reason == "ok (renamed)":
        assert decision.rename_to == "cam1"


def test_a_key_presented_as_a_name_is_never_recorded():
    assert _req(name="sk_secret", key=None).audit_name(None) == "[redacted]"
    assert _req(name="cam1", key="sk_guess").audit_name(None) == "cam1"


def test_lockout_backs_off_exponentially_and_forgets_after_a_quiet_window():
    policy = lockout.LockoutPolicy(threshold=3, base=timedelta(seconds=60), max=timedelta(seconds=200),
                                   window=timedelta(minutes=10))
    now = datetime(2026, 1, 1, tzinfo=UTC)
    state = None
    locks = []
    for i in range(6):
        state = backoff.after_failure(state, "192.0.2.9", now + timedelta(seconds=i), policy)
        locks.append((state.locked_until - state.last_failed_at).total_seconds() if state.locked_until else None)
    assert locks == [None, None, 60, 120, 200, 200]
    later = state.locked_until + timedelta(minutes=11)
    fresh = backoff.after_failure(state, "192.0.2.9", later, policy)
    assert (fresh.failures, fresh.locked_until) == (1, None)


def test_lockouts_are_listed_and_cleared(db):
    now = datetime.now(UTC)
    db.execute("INSERT INTO stream_auth_failures VALUES ('192.0.2.1', 7, %s, %s, %s), ('192.0.2.2', 1, %s, %s, NULL)",
               (now, now, now + timedelta(minutes=5), now, now))
    assert [s.addr for s in lockout.list_failures(db, VIEWER, locked_only=True)] == ["192.0.2.1"]
    with pytest.raises(InvalidInput, match="invalid address"):
        lockout.clear(db, OPERATOR, "192.0.2.x")
    assert lockout.clear(db, OPERATOR, "192.0.2.1") == 1
    assert lockout.clear(db, OPERATOR) == 1
    assert lockout.list_failures(db, VIEWER) == []


def test_pepper_from_setting_must_be_long(settings):
    assert key_pepper(settings.model_copy(update={"stream_key_pepper": SecretStr("x" * 40)})) == b"x" * 40
    with pytest.raises(ConfigError, match="too short"):
        key_pepper(settings.model_copy(update={"stream_key_pepper": SecretStr("short")}))


def test_pepper_defaults_to_a_system_secret_created_once(settings):
    first = key_pepper(settings)
    assert len(first) >= 32
    from backend.secrets.system import get_or_create

    assert get_or_create("rtmp-key-pepper", lambda: "never used", settings).encode() == first


runner = CliRunner()


def test_cli_create_prints_the_key_once_and_list_never_shows_it(settings, monkeypatch):
    monkeypatch.setenv("STREAM_KEY_PEPPER", "cli-pepper-" + "z" * 40)
    from backend.config import get_settings

    get_settings.cache_clear()
    created = runner.invoke(app, ["streams", "keys", "create", "cam7", "--expires", "7d", "--allow-ip",
                                  "198.51.100.0/24", "--label", "team=news", "--json"])
    assert created.exit_code == 0, created.output
    body = json.loads(created.stdout)
    assert body["key"].startswith("sk_") and body["allowed_cidrs"] == ["198.51.100.0/24"]
    listed = runner.invoke(app, ["streams", "keys", "list", "--json"])
    assert listed.exit_code == 0 and body["key"] not in listed.stdout
    assert json.loads(listed.stdout)[0]["id"] == body["id"]
    revoked = runner.invoke(app, ["streams", "keys", "revoke", body["id"]])
    assert revoked.exit_code == 0 and "revoked" in revoked.stdout
    audit_out = runner.invoke(app, ["streams", "audit", "--json"])
    assert audit_out.exit_code == 0 and json.loads(audit_out.stdout) == []


def test_cli_errors_are_one_line(settings, monkeypatch):
    monkeypatch.setenv("STREAM_KEY_PEPPER", "cli-pepper-" + "z" * 40)
    from backend.config import get_settings

    get_settings.cache_clear()
    bad_ip = runner.invoke(app, ["streams", "keys", "create", "cam7", "--allow-ip", "nope"])
    assert bad_ip.exit_code == 2 and "invalid --allow-ip 'nope'" in bad_ip.output
    bad_expiry = runner.invoke(app, ["streams", "keys", "create", "cam7", "--expires", "soon"])
    assert bad_expiry.exit_code == 2 and "invalid --expires 'soon'" in bad_expiry.output
    assert "Traceback" not in bad_ip.output + bad_expiry.output


def test_cli_acting_viewer_cannot_create(settings, db, monkeypatch):
    monkeypatch.setenv("STREAM_KEY_PEPPER", "cli-pepper-" + "z" * 40)
    user_service.add_user(db, SYSTEM, "vera", Role.viewer, "a long password")
    denied = runner.invoke(app, ["--as", "vera", "streams", "keys", "create", "cam7"])
    assert denied.exit_code == 2 and "needs role operator" in denied.output


def test_attempts_are_pruned_by_admins_only(db):
    db.execute("""INSERT INTO stream_auth_attempts (at, call, addr, app, stream, outcome, reason)
                  VALUES (now() - interval '40 days', 'publish', '192.0.2.1', 'live', 'old', 'deny', 'x'),
                         (now(), 'publish', '192.0.2.1', 'live', 'new', 'allow', 'ok')""")
    with pytest.raises(PermissionDenied):
        attempts.prune_attempts(db, OPERATOR, timedelta(days=30))
    assert attempts.prune_attempts(db, SYSTEM, timedelta(days=30)) == 1
    assert [a.stream for a in attempts.list_attempts(db, VIEWER)] == ["new"]
    (count,) = attempts.attempt_counts(db, VIEWER, since=datetime.now(UTC) - timedelta(hours=1))
    assert (count.outcome, count.count) == ("allow", 1)


def test_only_nginx_networks_may_call_the_callbacks(settings):
    gate = CallbackGate(settings)
    assert gate.caller_allowed("127.0.0.1") and gate.caller_allowed("127.8.9.10") and gate.caller_allowed("::1")
    assert not gate.caller_allowed("203.0.113.5") and not gate.caller_allowed("testclient")
    narrow = CallbackGate(settings.model_copy(update={"streams_callback_allowed_nets": ["192.0.2.0/24"]}))
    assert narrow.caller_allowed("192.0.2.77") and not narrow.caller_allowed("127.0.0.1")
    with pytest.raises(ConfigError, match="STREAMS_CALLBACK_ALLOWED_NETS"):
        CallbackGate(settings.model_copy(update={"streams_callback_allowed_nets": ["nope"]}))


def test_cli_tables(settings, db, monkeypatch):
    monkeypatch.setenv("STREAM_KEY_PEPPER", "cli-pepper-" + "z" * 40)
    monkeypatch.setenv("COLUMNS", "200")  # rich reads it on every print: no wrapped cells
    from backend.config import get_settings

    get_settings.cache_clear()
    issued = keys.create_key(db, SYSTEM, key_pepper(get_settings()), "cam8", owner="news")
    db.execute("""INSERT INTO live_streams (app, stream, key_id, addr, client_id, stats)
                  VALUES ('live', 'cam8', %s, '192.0.2.8', '3', '{"bw_in_kbps": 812.4, "video_codec": "H264",
                          "width": 1280, "height": 720, "frame_rate": 30, "clients": 2}')""", (issued.key.id,))
    db.execute("""INSERT INTO stream_auth_attempts (call, addr, app, stream, key_id, outcome, reason)
                  VALUES ('publish', '192.0.2.8', 'live', 'cam8', %s, 'deny', 'key expired')""", (issued.key.id,))
    db.execute("INSERT INTO stream_auth_failures VALUES ('192.0.2.9', 2, now(), now(), NULL)")
    listed = runner.invoke(app, ["streams", "keys", "list"])
    assert listed.exit_code == 0 and issued.key.id in listed.output and issued.secret not in listed.output
    assert issued.key.key_prefix in listed.output and "news" in listed.output
    live_out = runner.invoke(app, ["streams", "live"])
    assert live_out.exit_code == 0 and "live/cam8" in live_out.output and "H264 1280x720" in live_out.output
    audit_out = runner.invoke(app, ["streams", "audit", "--outcome", "deny"])
    assert audit_out.exit_code == 0 and "key expired" in audit_out.output
    bad = runner.invoke(app, ["streams", "audit", "--outcome", "maybe"])
    assert bad.exit_code == 2 and "invalid --outcome 'maybe'" in bad.output
    locks = runner.invoke(app, ["streams", "lockouts"])
    assert locks.exit_code == 0 and "192.0.2.9" in locks.output
    cleared = runner.invoke(app, ["streams", "lockouts", "--clear", "192.0.2.9"])
    assert cleared.exit_code == 0 and "cleared 1 address" in cleared.output


@pytest.mark.parametrize(("durable", "expected"), [(False, "off"), (True, "on")])
def test_callback_commits_wait_for_the_wal_only_when_asked(settings, durable, expected):
    import asyncio

    async def setting() -> str:
        gate = CallbackGate(settings.model_copy(update={"stream_key_pepper": SecretStr("p" * 40),
                                                        "streams_callback_synchronous_commit": durable}))
        decision = await gate.publish(_req(key="sk_unknown"))
        _, pool = await gate._ready()
        async with pool.connection() as conn:
            value = (await (await conn.execute("SHOW synchronous_commit")).fetchone())["synchronous_commit"]
        await gate.close()
        assert decision.reason == "missing or unknown key"
        return value

    assert asyncio.run(setting()) == expected


# --- callbacks over HTTP, in process (the real nginx runs in test_streams_rtmp.py) ---------------------------------

TOKEN = "callback-token-" + "t" * 32


def _callback_settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"stream_key_pepper": SecretStr(PEPPER.decode()),
                                       "streams_callback_token": SecretStr(TOKEN)})


def _post(settings: Settings, *calls: tuple[str, dict[str, str]]) -> list[httpx.Response]:
    """POST callbacks (`path?query`, form) to the API app in process, in order, as nginx on 127.0.0.1 would."""
    async def run() -> list[httpx.Response]:
        api = create_app(settings)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=api), base_url="http://api") as client:
            try:
                return [await client.post(path, data=form) for path, form in calls]
            finally:
                await api.state.rtmp_gate.close()

    return asyncio.run(run())


def _counts(db) -> tuple[int, int, int]:
    row = db.execute("""SELECT (SELECT count(*) FROM stream_auth_attempts) AS attempts,
                               (SELECT count(*) FROM stream_auth_failures) AS failures,
                               (SELECT count(*) FROM live_streams) AS live""").fetchone()
    return row["attempts"], row["failures"], row["live"]


def test_callbacks_without_the_token_are_refused_and_change_nothing(settings, db, caplog):
    """A forged caller (any container, VM or VPN client that reaches the API) cannot lock out a publisher's
    address, end a live stream or fill the attempts table without the callback token."""
    cb = _callback_settings(settings)
    issued = keys.create_key(db, SYSTEM, PEPPER, "cam1")
    db.execute("INSERT INTO live_streams (app, stream, key_id, addr, client_id) VALUES ('live', 'cam1', %s, "
               "'192.0.2.7', '5')", (issued.key.id,))
    victim = {"app": "live", "name": "cam1", "addr": "192.0.2.7", "clientid": "5"}
    guesses = [(path, {**victim, "call": "publish", "key": "sk_guess"})
               for path in ("/rtmp/on_publish", "/rtmp/on_publish?token=", "/rtmp/on_publish?token=wrong-token",
                            f"/rtmp/on_publish?token={TOKEN[:-1]}", f"/rtmp/on_publish?token={TOKEN}x")
               for _ in range(cb.streams_lockout_threshold)]
    # a token in the form (the publisher's own `?token=` URL argument) is not the callback URL's token
    in_form = ("/rtmp/on_publish", {**victim, "call": "publish", "key": issued.secret, "token": TOKEN})
    update = ("/rtmp/on_update?token=nope", {**victim, "call": "update_publish", "key": issued.secret})
    done = ("/rtmp/on_publish_done?token=nope", {**victim, "call": "publish_done", "key": issued.secret})
    with caplog.at_level(logging.INFO, logger="backend"):
        responses = _post(cb, *guesses, in_form, update, done)
    assert [r.status_code for r in responses] == [403] * len(responses)
    assert _counts(db) == (0, 0, 1)
    assert TOKEN not in caplog.text and "wrong-token" not in caplog.text
    assert all(TOKEN not in r.text for r in responses)
    (ended,) = _post(cb, (f"/rtmp/on_publish_done?token={TOKEN}", done[1]))  # with the token it does act
    assert ended.status_code == 200 and _counts(db)[2] == 0


def test_the_callback_allow_list_defaults_to_loopback_only():
    gate = CallbackGate(Settings(_env_file=None))
    assert gate.caller_allowed("127.0.0.1") and gate.caller_allowed("::1")
    for private in ("10.1.2.3", "172.17.0.2", "192.168.1.10", "fd00::1"):
        assert not gate.caller_allowed(private), private


def test_callback_token_from_the_setting_or_created_once_in_the_secrets_backend(settings):
    assert callback_token(settings.model_copy(update={"streams_callback_token": SecretStr("a" * 40)})) == "a" * 40
    for bad, message in (("tiny-tkn", "too short"), ("x" * 39 + ";", "letters, digits")):
        with pytest.raises(ConfigError, match=message) as raised:
            callback_token(settings.model_copy(update={"streams_callback_token": SecretStr(bad)}))
        assert bad not in str(raised.value)
    created = callback_token(settings)
    assert len(created) >= 32 and callback_token(settings) == created
    from backend.secrets.system import get_or_create

    assert get_or_create("rtmp-callback-token", lambda: "never used", settings) == created


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"stream": "cam1\n"}, "invalid stream name"),
    ({"stream": "cam1\r\nLocation: http://evil.example"}, "invalid stream name"),
    ({"stream": "cam1", "app": "live\n"}, "invalid application"),
])
def test_a_line_break_never_passes_a_name_check(db, kwargs, message):
    with pytest.raises(InvalidInput, match=message):
        keys.create_key(db, OPERATOR, PEPPER, **kwargs)
    with pytest.raises(InvalidInput, match="invalid label"):
        keys.create_key(db, OPERATOR, PEPPER, "cam1", labels={"team\n": "news"})
    assert keys.list_keys(db, OPERATOR, include_inactive=True) == []


def test_a_name_with_a_line_break_is_refused_and_never_reaches_a_location_header(settings, db, monkeypatch):
    """Names end up in a 302 `Location` (OBS-style rename): "\\n" or "\\r\\n" must never get that far."""
    monkeypatch.setenv("STREAM_KEY_PEPPER", PEPPER.decode())
    monkeypatch.setenv("COLUMNS", "200")  # one line means one line, not one terminal width
    from backend.config import get_settings

    get_settings.cache_clear()
    for name in ("cam1\n", "cam1\r\nLocation: http://evil.example"):
        refused = runner.invoke(app, ["streams", "keys", "create", name])
        assert refused.exit_code == 2 and "invalid stream name" in refused.output, refused.output
        assert "Traceback" not in refused.output and len(refused.output.strip().splitlines()) == 1
    issued = keys.create_key(db, SYSTEM, PEPPER, "cam1")
    forms = [{"name": issued.secret + "\r\nX-Injected: 1"}, {"name": "cam1\r\nX-Injected: 1", "key": issued.secret},
             {"name": "cam1\n", "key": issued.secret}]
    responses = _post(_callback_settings(settings), *[
        (f"/rtmp/on_publish?token={TOKEN}", {"app": "live", "addr": "192.0.2.8", "clientid": "1", "call": "publish",
                                             **form}) for form in forms])
    for response in responses:
        assert response.status_code == 403
        assert "location" not in response.headers and "x-injected" not in response.headers


def test_lockout_is_clamped_however_many_failures_an_address_has():
    policy = lockout.LockoutPolicy(threshold=5, base=timedelta(seconds=60), max=timedelta(hours=1),
                                   window=timedelta(minutes=15))
    now = datetime(2026, 1, 1, tzinfo=UTC)
    for failures in (10, 44, 45, 46, 100, 10_000, 2**31 - 2):
        state = backoff.FailureState("192.0.2.9", failures, now, now, None)
        after = backoff.after_failure(state, "192.0.2.9", now + timedelta(seconds=1), policy)
        assert after.locked_until - after.last_failed_at == policy.max, failures


def test_an_address_with_many_failures_is_still_answered_and_recorded(settings, db):
    """Past ~45 failures the lock length overflowed: every attempt answered 503 and left no attempt row."""
    recent = datetime.now(UTC) - timedelta(seconds=5)
    db.execute("INSERT INTO stream_auth_failures VALUES ('192.0.2.44', 60, %s, %s, %s)", (recent, recent, recent))
    form = {"app": "live", "name": "cam1", "addr": "192.0.2.44", "clientid": "1", "call": "publish", "key": "sk_x"}
    (response,) = _post(_callback_settings(settings), (f"/rtmp/on_publish?token={TOKEN}", form))
    assert response.status_code == 403
    assert [a.reason for a in attempts.list_attempts(db, SYSTEM, addr="192.0.2.44")] == ["missing or unknown key"]
    (state,) = lockout.list_failures(db, SYSTEM)
    assert state.failures == 61 and state.locked_until - state.last_failed_at == timedelta(hours=1)
