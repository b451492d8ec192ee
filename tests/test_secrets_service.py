"""The secrets service over BOTH backends: the real Secret Manager client against a wire-level fake, and the
local encrypted store. Same suite, same expectations; plus RBAC, audit and the no-leak guarantee."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from pydantic import SecretStr

from backend.config import Settings, get_settings
from backend.errors import Conflict, InvalidInput, NotFound, Unavailable
from backend.identity.principal import PermissionDenied, Principal, Role
from backend.secrets.models import Replication, SecretSpec, VersionState
from backend.secrets.service import SecretsService
from tests.fakes.secret_manager import FakeSecretManager

ADMIN = Principal("alice", Role.admin)
OPERATOR = Principal("oscar", Role.operator)
VIEWER = Principal("vera", Role.viewer)


@dataclass
class Harness:
    service: SecretsService
    fake: FakeSecretManager | None


@pytest.fixture(params=["local", "gcp"])
def harness(request: pytest.FixtureRequest, settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[Harness]:
    if request.param == "local":
        yield Harness(SecretsService(settings), None)
        return
    fake = FakeSecretManager(project="demo-project").start()
    monkeypatch.setenv("SECRETS_BACKEND", "gcp")
    monkeypatch.setenv("GCP_PROJECT_ID", "demo-project")
    monkeypatch.setenv("SECRET_MANAGER_ENDPOINT", fake.endpoint)
    get_settings.cache_clear()
    yield Harness(SecretsService(get_settings()), fake)
    fake.stop()


@pytest.fixture
def svc(harness: Harness) -> SecretsService:
    return harness.service


def _audit(db: psycopg.Connection) -> list[dict]:
    return db.execute("SELECT actor, action, target, outcome, detail FROM audit_log WHERE area = 'secrets' "
                      "ORDER BY id").fetchall()


def test_backend_is_the_one_configured(harness: Harness) -> None:
    harness.service.create(ADMIN, "probe", value="v")
    if harness.fake is None:
        assert harness.service.backend.kind == "local"
    else:
        from google.cloud.secretmanager_v1 import SecretManagerServiceClient

        assert isinstance(harness.service.backend.client, SecretManagerServiceClient)  # type: ignore[attr-defined]
        assert harness.fake.calls[:2] == ["CreateSecret", "AddSecretVersion"]


def test_create_list_describe_with_labels_and_pages(svc: SecretsService) -> None:
    for i in range(5):
        svc.create(ADMIN, f"db-pass-{i}", SecretSpec(labels={"env": "prod" if i % 2 else "dev", "team": "core"}),
                   value=f"v{i}")
    first = svc.list_secrets(OPERATOR, page_size=2)
    assert [m.name for m in first.secrets] == ["db-pass-0", "db-pass-1"] and first.next_page_token
    second = svc.list_secrets(OPERATOR, page_size=2, page_token=first.next_page_token)
    assert [m.name for m in second.secrets] == ["db-pass-2", "db-pass-3"]
    assert [m.name for m in svc.list_all(OPERATOR)] == [f"db-pass-{i}" for i in range(5)]
    prod = svc.list_all(OPERATOR, labels={"env": "prod"})
    assert [m.name for m in prod] == ["db-pass-1", "db-pass-3"]
    assert svc.list_all(OPERATOR, labels={"env": "prod", "team": "other"}) == []
    forged = "x"
    with pytest.raises(InvalidInput, match="page token"):
        svc.list_secrets(OPERATOR, page_token=forged)

    details = svc.describe(OPERATOR, "db-pass-1")
    assert details.meta.labels == {"env": "prod", "team": "core"}
    assert details.meta.replication.automatic and details.meta.etag
    assert [(v.version, v.state) for v in details.versions] == [(1, VersionState.ENABLED)]


def test_versions_states_and_latest(svc: SecretsService) -> None:
    svc.create(ADMIN, "api-key", value="one")
    assert svc.add_version(ADMIN, "api-key", "two").version == 2
    assert svc.add_version(ADMIN, "api-key", SecretStr("three")).version == 3
    assert svc.reveal(ADMIN, "api-key").value.get_secret_value() == "three"

    assert svc.disable_version(ADMIN, "api-key", 3).state == VersionState.DISABLED
    latest = svc.reveal(ADMIN, "api-key")
    assert (latest.version, latest.value.get_secret_value()) == (2, "two")  # latest = newest ENABLED
    with pytest.raises(InvalidInput, match="version 3"):
        svc.reveal(ADMIN, "api-key", 3)

    assert svc.enable_version(ADMIN, "api-key", 3).state == VersionState.ENABLED
    assert svc.reveal(ADMIN, "api-key").version == 3

    destroyed = svc.destroy_version(ADMIN, "api-key", 2)
    assert destroyed.state == VersionState.DESTROYED and destroyed.destroy_time is not None
    with pytest.raises(InvalidInput):
        svc.reveal(ADMIN, "api-key", 2)
    with pytest.raises(InvalidInput):
        svc.enable_version(ADMIN, "api-key", 2)
    with pytest.raises(InvalidInput, match="DESTROYED"):
        svc.destroy_version(ADMIN, "api-key", 2)
    assert svc.reveal(ADMIN, "api-key", 1).value.get_secret_value() == "one"

    states = [(v.version, v.state) for v in svc.describe(ADMIN, "api-key").versions]
    assert states == [(3, VersionState.ENABLED), (2, VersionState.DESTROYED), (1, VersionState.ENABLED)]

    for number in (1, 3):
        svc.disable_version(ADMIN, "api-key", number)
    with pytest.raises(NotFound):
        svc.reveal(ADMIN, "api-key")


def test_missing_and_duplicate(svc: SecretsService) -> None:
    with pytest.raises(NotFound, match="'ghost'"):
        svc.describe(ADMIN, "ghost")
    with pytest.raises(NotFound):
        svc.add_version(ADMIN, "ghost", "x")
    with pytest.raises(NotFound):
        svc.delete(ADMIN, "ghost")
    svc.create(ADMIN, "twice")
    with pytest.raises(Conflict, match="already exists"):
        svc.create(ADMIN, "twice")
    with pytest.raises(NotFound):
        svc.reveal(ADMIN, "twice")  # no versions yet
    with pytest.raises(NotFound):
        svc.reveal(ADMIN, "twice", 7)


def test_labels_update_is_guarded_by_etag(svc: SecretsService) -> None:
    meta = svc.create(ADMIN, "guarded", SecretSpec(labels={"env": "dev"})).meta
    updated = svc.update_labels(ADMIN, "guarded", {"env": "prod", "owner": "alice"}, meta.etag)
    assert updated.labels == {"env": "prod", "owner": "alice"} and updated.etag != meta.etag
    with pytest.raises(Conflict, match="stale etag"):
        svc.update_labels(ADMIN, "guarded", {"env": "dev"}, meta.etag)
    assert svc.describe(ADMIN, "guarded").meta.labels == {"env": "prod", "owner": "alice"}
    with pytest.raises(InvalidInput, match="label key"):
        svc.update_labels(ADMIN, "guarded", {"Bad Key": "x"}, updated.etag)


def test_delete_with_and_without_etag(svc: SecretsService) -> None:
    meta = svc.create(ADMIN, "doomed", value="x").meta
    fresh = svc.update_labels(ADMIN, "doomed", {"a": "b"}, meta.etag)
    with pytest.raises(Conflict):
        svc.delete(ADMIN, "doomed", etag=meta.etag)
    svc.delete(ADMIN, "doomed", etag=fresh.etag)
    with pytest.raises(NotFound):
        svc.describe(ADMIN, "doomed")
    svc.create(ADMIN, "doomed-2")
    svc.delete(ADMIN, "doomed-2")
    assert svc.list_all(ADMIN) == []


def test_replication_expiry_and_rotation_are_recorded(svc: SecretsService) -> None:
    before = datetime.now(UTC)
    spec = SecretSpec(
        replication=Replication(("europe-west1", "us-east1")),
        ttl=timedelta(days=30),
        rotation_period=timedelta(days=90),
        topics=("projects/demo-project/topics/rotations",),
    )
    meta = svc.create(ADMIN, "rotating", spec, value="x").meta
    assert meta.replication.locations == ("europe-west1", "us-east1") and not meta.replication.automatic
    assert meta.expire_time is not None
    assert timedelta(days=30) <= meta.expire_time - before < timedelta(days=30, minutes=1)
    assert meta.rotation_period == timedelta(days=90)
    assert meta.next_rotation_time is not None
    assert timedelta(days=90) <= meta.next_rotation_time - before < timedelta(days=90, minutes=1)
    assert svc.describe(OPERATOR, "rotating").meta == meta

    at = (before + timedelta(days=3)).replace(microsecond=0)
    assert svc.create(ADMIN, "until", SecretSpec(expire_time=at)).meta.expire_time == at


def test_expired_secret_is_gone(svc: SecretsService) -> None:
    svc.create(ADMIN, "short-lived", SecretSpec(ttl=timedelta(seconds=1)), value="x")
    assert svc.reveal(ADMIN, "short-lived").value.get_secret_value() == "x"
    time.sleep(1.2)
    with pytest.raises(NotFound):
        svc.describe(ADMIN, "short-lived")


def test_invalid_input_is_rejected_clearly(svc: SecretsService) -> None:
    with pytest.raises(InvalidInput, match="invalid secret name"):
        svc.create(ADMIN, "has space")
    with pytest.raises(InvalidInput, match="empty"):
        svc.create(ADMIN, "empty", value="")
    with pytest.raises(InvalidInput, match="at most 65536"):
        svc.create(ADMIN, "huge", value="x" * 70_000)
    with pytest.raises(InvalidInput, match="not both"):
        svc.create(ADMIN, "both", SecretSpec(ttl=timedelta(days=1), expire_time=datetime.now(UTC) + timedelta(days=1)))
    with pytest.raises(InvalidInput, match="at least 1 hour"):
        svc.create(ADMIN, "fast", SecretSpec(rotation_period=timedelta(minutes=5)))
    assert svc.list_all(ADMIN) == []


def test_a_trailing_newline_makes_a_name_or_label_invalid(svc: SecretsService) -> None:
    with pytest.raises(InvalidInput, match="invalid secret name"):
        svc.create(ADMIN, "name\n", value="v")
    with pytest.raises(InvalidInput, match="invalid label key"):
        svc.create(ADMIN, "labelled", SecretSpec(labels={"env\n": "prod"}))
    with pytest.raises(InvalidInput, match="invalid value for label"):
        svc.create(ADMIN, "labelled", SecretSpec(labels={"env": "prod\n"}))
    assert svc.list_all(ADMIN) == []


def test_diff_is_masked_unless_revealed(svc: SecretsService) -> None:
    svc.create(ADMIN, "app-env", value="DB_USER=app\nDB_PASS=old-pass\nREMOVED=1\n")
    svc.add_version(ADMIN, "app-env", "DB_USER=app\nDB_PASS=new-pass\nADDED=2\n")
    masked = svc.diff(ADMIN, "app-env", 1)
    assert masked.format == "env" and (masked.old_version, masked.new_version) == (1, 2)
    assert [(c.key, c.kind) for c in masked.changes] == [("ADDED", "added"), ("DB_PASS", "changed"),
                                                         ("REMOVED", "removed")]
    assert all(c.old is None and c.new is None for c in masked.changes)
    revealed = svc.diff(ADMIN, "app-env", 1, 2, reveal=True)
    changed = next(c for c in revealed.changes if c.key == "DB_PASS")
    assert changed.old and changed.new
    assert (changed.old.get_secret_value(), changed.new.get_secret_value()) == ("old-pass", "new-pass")
    assert "new-pass" not in repr(revealed)

    svc.create(ADMIN, "cfg", value='{"db": {"user": "a", "pass": "p1"}, "port": 5432}')
    svc.add_version(ADMIN, "cfg", '{"db": {"user": "a", "pass": "p2"}, "port": 5433, "tls": true}')
    assert [(c.key, c.kind) for c in svc.diff(ADMIN, "cfg", 1).changes] == [
        ("db.pass", "changed"), ("port", "changed"), ("tls", "added")]

    svc.create(ADMIN, "cert", value="-----BEGIN-----\nAAAA\nBBBB\n-----END-----")
    svc.add_version(ADMIN, "cert", "-----BEGIN-----\nAAAA\nCCCC\nDDDD\n-----END-----")
    masked_cert = svc.diff(ADMIN, "cert", 1)
    assert (masked_cert.format, masked_cert.changed, masked_cert.changes) == ("text", True, [])
    assert [(c.key, c.kind) for c in svc.diff(ADMIN, "cert", 1, reveal=True).changes] == [("line 3", "changed"),
                                                                                          ("line 4", "added")]
    with pytest.raises(PermissionDenied):
        svc.diff(OPERATOR, "cert", 1)


def test_rotation_due(svc: SecretsService) -> None:
    topics = ("projects/demo-project/topics/rotations",)
    svc.create(ADMIN, "weekly", SecretSpec(rotation_period=timedelta(days=7), topics=topics), value="a")
    svc.create(ADMIN, "yearly", SecretSpec(rotation_period=timedelta(days=365), topics=topics), value="b")
    svc.create(ADMIN, "no-policy", value="c")
    now = datetime.now(UTC)
    assert svc.rotation_due(OPERATOR, within=timedelta(days=1), now=now) == []
    soon = svc.rotation_due(OPERATOR, within=timedelta(days=8), now=now)
    assert [s.secret for s in soon] == ["weekly"] and not soon[0].overdue
    later = now + timedelta(days=10)
    overdue = svc.rotation_due(OPERATOR, within=timedelta(0), now=later)
    assert [(s.secret, s.overdue, s.latest_version) for s in overdue] == [("weekly", True, 1)]
    assert overdue[0].age is not None and overdue[0].age >= timedelta(days=10)


def test_rbac_denials_are_enforced_and_audited(svc: SecretsService, db: psycopg.Connection) -> None:
    svc.create(ADMIN, "guarded", value="x")
    assert [m.name for m in svc.list_all(OPERATOR)] == ["guarded"]
    assert svc.describe(OPERATOR, "guarded").meta.name == "guarded"
    denied_calls = [
        lambda: svc.reveal(OPERATOR, "guarded"),
        lambda: svc.create(OPERATOR, "mine", value="x"),
        lambda: svc.add_version(OPERATOR, "guarded", "y"),
        lambda: svc.disable_version(OPERATOR, "guarded", 1),
        lambda: svc.enable_version(OPERATOR, "guarded", 1),
        lambda: svc.destroy_version(OPERATOR, "guarded", 1),
        lambda: svc.delete(OPERATOR, "guarded"),
        lambda: svc.update_labels(OPERATOR, "guarded", {}, "etag"),
        lambda: svc.audit_entries(OPERATOR),
        lambda: svc.list_secrets(VIEWER),
        lambda: svc.describe(VIEWER, "guarded"),
        lambda: svc.rotation_due(VIEWER),
    ]
    for call in denied_calls:
        with pytest.raises(PermissionDenied):
            call()
    assert svc.reveal(ADMIN, "guarded").value.get_secret_value() == "x"  # nothing changed
    denials = [r for r in _audit(db) if r["outcome"] == "denied"]
    assert len(denials) == len(denied_calls)
    assert {(r["actor"], r["action"]) for r in denials} >= {("oscar", "reveal"), ("oscar", "delete"),
                                                           ("vera", "list"), ("vera", "describe")}
    assert all("needs role" in r["detail"]["reason"] for r in denials)


def test_audit_rows_name_actor_action_secret_version_outcome(svc: SecretsService, db: psycopg.Connection) -> None:
    svc.create(ADMIN, "tracked", value="a")
    svc.add_version(ADMIN, "tracked", "b")
    svc.reveal(ADMIN, "tracked", 1)
    svc.disable_version(ADMIN, "tracked", 2)
    with pytest.raises(InvalidInput):
        svc.reveal(ADMIN, "tracked", 2)
    rows = _audit(db)
    assert [(r["actor"], r["action"], r["target"], r["outcome"], r["detail"].get("version")) for r in rows] == [
        ("alice", "create", "tracked", "ok", 1),
        ("alice", "add-version", "tracked", "ok", 2),
        ("alice", "reveal", "tracked", "ok", 1),
        ("alice", "disable", "tracked", "ok", 2),
        ("alice", "reveal", "tracked", "error", 2),
    ]
    target = "tracked"
    entries = svc.audit_entries(ADMIN, secret=target)
    assert [e.action for e in entries][:2] == ["reveal", "disable"] and entries[0].outcome == "error"


VALUE = "LEAKCANARY-9f1c2e7d"


def test_values_never_leak(harness: Harness, db: psycopg.Connection, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    svc = harness.service
    errors: list[str] = []
    reprs: list[str] = []

    def attempt(call, *args, **kwargs) -> object:  # type: ignore[no-untyped-def]
        try:
            result = call(*args, **kwargs)
        except Exception as exc:
            errors.append(f"{exc!s} {exc!r}")
            return None
        reprs.append(f"{result!r} {result!s}")
        return result

    topics = ("projects/demo-project/topics/rotations",)
    attempt(svc.create, ADMIN, "canary", SecretSpec(labels={"k": "v"}, rotation_period=timedelta(days=1),
                                                   topics=topics), value=f"TOKEN={VALUE}")
    attempt(svc.add_version, ADMIN, "canary", f"TOKEN={VALUE}-2")
    attempt(svc.add_version, ADMIN, "missing", VALUE)
    attempt(svc.add_version, OPERATOR, "canary", VALUE)
    attempt(svc.create, ADMIN, "canary", value=VALUE)
    attempt(svc.reveal, ADMIN, "canary")
    attempt(svc.reveal, ADMIN, "canary", 1)
    attempt(svc.diff, ADMIN, "canary", 1, 2)
    attempt(svc.diff, ADMIN, "canary", 1, 2, reveal=True)
    attempt(svc.describe, OPERATOR, "canary")
    attempt(svc.list_all, OPERATOR)
    attempt(svc.rotation_due, OPERATOR, now=datetime.now(UTC) + timedelta(days=2))
    attempt(svc.disable_version, ADMIN, "canary", 1)
    attempt(svc.reveal, ADMIN, "canary", 1)
    attempt(svc.enable_version, ADMIN, "canary", 1)
    attempt(svc.destroy_version, ADMIN, "canary", 1)
    attempt(svc.reveal, ADMIN, "canary", 1)
    etag = svc.describe(ADMIN, "canary").meta.etag
    attempt(svc.update_labels, ADMIN, "canary", {"k": "w"}, etag)
    attempt(svc.update_labels, ADMIN, "canary", {"k": "x"}, etag)
    attempt(svc.audit_entries, ADMIN)
    attempt(svc.delete, ADMIN, "canary")

    assert len(errors) >= 6 and len(reprs) >= 12
    revealed = [r for r in reprs if "RevealedSecret" in r]
    assert revealed and all("**********" in r for r in revealed)
    audit_text = str(_audit(db))
    for where, text in (("logs", caplog.text), ("audit", audit_text), ("errors", " ".join(errors)),
                        ("reprs", " ".join(reprs))):
        assert VALUE not in text, f"the value leaked into {where}"
    if harness.fake is None:
        assert VALUE.encode() not in svc.settings.secrets_local_path.read_bytes()


def test_unreachable_secret_manager_is_unavailable_and_audited(settings: Settings, db: psycopg.Connection) -> None:
    from backend.secrets.gcp import GcpSecretsBackend, make_client

    fake = FakeSecretManager(project="gone").start()
    fake.stop()
    svc = SecretsService(settings, GcpSecretsBackend("gone", make_client(fake.endpoint), timeout=1))
    with pytest.raises(Unavailable, match="Secret Manager is unavailable"):
        svc.reveal(ADMIN, "anything")
    with pytest.raises(Unavailable):
        svc.create(ADMIN, "anything", value="x")
    assert [(r["action"], r["outcome"]) for r in _audit(db)] == [("reveal", "error"), ("create", "error")]
