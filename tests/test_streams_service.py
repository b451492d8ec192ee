"""The streams service: roles, the pepper and the connection are its own; revoke and rotate commit before they kick.

nginx's `/control` is a small loopback HTTP server here that, when asked to drop a publisher, looks at the database
from its own connection: what it sees is what a publisher reconnecting at that moment would meet.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import psycopg
import pytest
from pydantic import SecretStr

from backend import audit
from backend.config import Settings
from backend.db import connect
from backend.embedded.ports import free_port
from backend.errors import InvalidInput
from backend.identity import PermissionDenied, Principal, Role
from backend.streams import service
from backend.streams.pepper import hash_key

PEPPER = "service-test-pepper-" + "s" * 32
ADMIN = Principal("ada", Role.admin)
OPERATOR = Principal("olga", Role.operator)
VIEWER = Principal("victor", Role.viewer)


class Control:
    """nginx's `/control/drop/publisher`: records each drop with the revocation state of the stream's keys."""

    def __init__(self, database_url: str) -> None:
        self.drops: list[tuple[str, str, list[bool]]] = []
        control = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                query = parse_qs(urlsplit(self.path).query)
                app, name = query["app"][0], query["name"][0]
                with psycopg.connect(database_url) as conn:
                    revoked = [r[0] for r in conn.execute(
                        "SELECT revoked_at IS NOT NULL FROM stream_keys WHERE stream = %s ORDER BY created_at",
                        (name,))]
                control.drops.append((app, name, revoked))
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"1")

            def log_message(self, *args: object) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/control"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)


@pytest.fixture
def control(settings: Settings) -> Iterator[Control]:
    found = Control(settings.require_database_url())
    found.thread.start()
    yield found
    found.server.shutdown()
    found.server.server_close()
    found.thread.join(5)


@pytest.fixture
def streams_settings(settings: Settings, control: Control) -> Settings:
    return settings.model_copy(update={"stream_key_pepper": SecretStr(PEPPER),
                                       "streams_nginx_control_url": control.url})


def _go_live(db: psycopg.Connection, key_id: str, stream: str) -> None:
    db.execute("INSERT INTO live_streams (app, stream, key_id, addr, client_id) VALUES ('live', %s, %s, "
               "'192.0.2.4', '7')", (stream, key_id))


def test_create_hashes_the_key_with_the_configured_pepper(streams_settings: Settings, db: psycopg.Connection):
    issued = service.create_key(OPERATOR, "cam1", owner="news", expires_in=timedelta(days=1),
                                settings=streams_settings)
    stored = db.execute("SELECT key_hash, created_by FROM stream_keys WHERE id = %s", (issued.key.id,)).fetchone()
    assert bytes(stored["key_hash"]) == hash_key(PEPPER.encode(), issued.secret)
    assert stored["created_by"] == "olga"
    assert [k.id for k in service.list_keys(VIEWER, settings=streams_settings)] == [issued.key.id]


def test_rotate_commits_the_revocation_before_it_kicks_the_old_keys_publisher(
        streams_settings: Settings, control: Control, db: psycopg.Connection):
    old = service.create_key(OPERATOR, "cam1", settings=streams_settings)
    _go_live(db, old.key.id, "cam1")
    rotated = service.rotate_key(OPERATOR, old.key.id, settings=streams_settings)
    assert rotated.kicked == ["live/cam1"]
    assert control.drops == [("live", "cam1", [True, False])]  # old key revoked and committed, new one active
    assert bytes(db.execute("SELECT key_hash FROM stream_keys WHERE id = %s", (rotated.issued.key.id,)
                            ).fetchone()["key_hash"]) == hash_key(PEPPER.encode(), rotated.issued.secret)
    assert [e.action for e in audit.entries(db, area="streams")][:2] == ["key.rotate", "key.create"]


def test_revoke_kicks_only_the_keys_own_publishers(streams_settings: Settings, control: Control,
                                                   db: psycopg.Connection):
    mine = service.create_key(OPERATOR, "cam1", settings=streams_settings)
    other = service.create_key(OPERATOR, "cam2", settings=streams_settings)
    _go_live(db, mine.key.id, "cam1")
    _go_live(db, other.key.id, "cam2")
    revoked = service.revoke_key(OPERATOR, mine.key.id, settings=streams_settings)
    assert (revoked.key.state(), revoked.kicked) == ("revoked", ["live/cam1"])
    assert control.drops == [("live", "cam1", [True])]


def test_revoke_with_nginx_unreachable_still_revokes(settings: Settings, db: psycopg.Connection):
    unreachable = settings.model_copy(update={"stream_key_pepper": SecretStr(PEPPER),
                                              "streams_nginx_control_url": f"http://127.0.0.1:{free_port()}"})
    issued = service.create_key(OPERATOR, "cam1", settings=unreachable)
    _go_live(db, issued.key.id, "cam1")
    revoked = service.revoke_key(OPERATOR, issued.key.id, settings=unreachable)
    assert (revoked.key.state(), revoked.kicked) == ("revoked", [])


def test_kick_is_audited_and_needs_the_control_url(streams_settings: Settings, settings: Settings,
                                                   db: psycopg.Connection):
    assert service.kick(OPERATOR, "cam9", settings=streams_settings) == 1
    assert [(e.actor, e.action, e.target) for e in audit.entries(db, area="streams")] == [
        ("olga", "stream.kick", "live/cam9")]
    with pytest.raises(InvalidInput, match="STREAMS_NGINX_CONTROL_URL is not set"):
        service.kick(OPERATOR, "cam9", settings=settings.model_copy(update={"streams_nginx_control_url": None}))


def test_roles_are_checked_by_the_service(streams_settings: Settings, control: Control, db: psycopg.Connection):
    issued = service.create_key(OPERATOR, "cam1", settings=streams_settings)
    denied = [
        lambda: service.create_key(VIEWER, "cam2", settings=streams_settings),
        lambda: service.revoke_key(VIEWER, issued.key.id, settings=streams_settings),
        lambda: service.rotate_key(VIEWER, issued.key.id, settings=streams_settings),
        lambda: service.kick(VIEWER, "cam1", settings=streams_settings),
        lambda: service.clear_lockout(VIEWER, settings=streams_settings),
        lambda: service.prune_attempts(OPERATOR, timedelta(days=1), settings=streams_settings),
    ]
    for call in denied:
        with pytest.raises(PermissionDenied):
            call()
    assert control.drops == []
    assert db.execute("SELECT count(*) AS n FROM stream_keys").fetchone()["n"] == 1
    since = datetime.now(UTC) - timedelta(hours=1)
    assert service.list_live(VIEWER, settings=streams_settings) == []
    assert service.list_attempts(VIEWER, settings=streams_settings) == []
    assert service.attempt_counts(VIEWER, since=since, settings=streams_settings) == []
    assert service.list_failures(VIEWER, settings=streams_settings) == []
    assert service.prune_attempts(ADMIN, timedelta(days=1), settings=streams_settings) == 0


def test_every_call_closes_its_connection(streams_settings: Settings, control: Control):
    def open_connections() -> int:
        with connect(streams_settings, autocommit=True) as conn:
            return conn.execute("SELECT count(*) AS n FROM pg_stat_activity WHERE datname = current_database() "
                                "AND pid <> pg_backend_pid()").fetchone()["n"]

    before = open_connections()
    issued = service.create_key(OPERATOR, "cam1", settings=streams_settings)
    service.rotate_key(OPERATOR, issued.key.id, settings=streams_settings)
    service.list_keys(VIEWER, include_inactive=True, settings=streams_settings)
    service.live_streams(VIEWER, settings=streams_settings)
    deadline = time.monotonic() + 5  # a closed connection's server process takes a moment to leave
    while open_connections() != before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert open_connections() == before
