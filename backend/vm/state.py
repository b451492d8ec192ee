"""Where the agent keeps its countdown, evaluations and events: PostgreSQL when `DATABASE_URL` is set, else a
local JSON file. Both change the countdown under a lock, so a snooze from the console and a poll never race.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol, TypeVar

import psycopg
from psycopg.types.json import Jsonb

from backend.config import Settings
from backend.db.connection import connect_url
from backend.errors import Unavailable
from backend.vm.policy import Countdown, Decision

T = TypeVar("T")
_FILE_EVALUATIONS = 200
_FILE_EVENTS = 500


@dataclass(frozen=True)
class Evaluation:
    """One poll, as the console's "why (not) idle" view shows it."""

    host: str
    at: datetime
    decision: str
    reasons: list[str]
    signals: list[dict[str, Any]]
    idle_since: datetime | None = None
    stop_at: datetime | None = None

    @classmethod
    def of(cls, host: str, decision: Decision) -> Evaluation:
        return cls(
            host, decision.at, decision.kind, list(decision.reasons), [asdict(r) for r in decision.readings],
            decision.idle_since, decision.stop_at,
        )


@dataclass(frozen=True)
class Event:
    """A warning, a stop (or a dry-run / aborted / failed one), a boot, a snooze or a skip."""

    host: str
    at: datetime
    kind: str
    detail: dict[str, Any] = field(default_factory=dict)


class Store(Protocol):
    def transact(self, host: str, change: Callable[[Countdown], tuple[Countdown, T]]) -> T: ...
    def load(self, host: str) -> Countdown: ...
    def record(self, evaluation: Evaluation) -> None: ...
    def event(self, event: Event) -> None: ...
    def evaluations(self, host: str, limit: int = 50) -> list[Evaluation]: ...
    def events(self, host: str, limit: int = 50) -> list[Event]: ...
    def prune(self, before: datetime) -> None: ...


class DbStore:
    def __init__(self, database_url: str) -> None:
        self.database_url = database_url

    @contextmanager
    def _conn(self) -> Iterator[psycopg.Connection]:
        """A short connection per operation, so the agent outlives database restarts."""
        try:
            conn = connect_url(self.database_url, connect_timeout=10)
        except psycopg.OperationalError:
            raise Unavailable("the database is not reachable right now: the agent keeps the machine up") from None
        with conn:
            yield conn

    def transact(self, host: str, change: Callable[[Countdown], tuple[Countdown, T]]) -> T:
        with self._conn() as conn:
            conn.execute("INSERT INTO vm_agent_state (host) VALUES (%s) ON CONFLICT (host) DO NOTHING", (host,))
            row = conn.execute("SELECT state FROM vm_agent_state WHERE host = %s FOR UPDATE", (host,)).fetchone()
            state, result = change(Countdown.from_json(row["state"]))
            conn.execute(
                "UPDATE vm_agent_state SET state = %s, updated_at = now() WHERE host = %s",
                (Jsonb(state.to_json()), host),
            )
            return result

    def load(self, host: str) -> Countdown:
        with self._conn() as conn:
            row = conn.execute("SELECT state FROM vm_agent_state WHERE host = %s", (host,)).fetchone()
        return Countdown.from_json(row["state"]) if row else Countdown()

    def record(self, evaluation: Evaluation) -> None:
        e = evaluation
        with self._conn() as conn:
            conn.execute(
                """INSERT INTO vm_evaluations (host, at, decision, reasons, signals, idle_since, stop_at)
                   VALUES (%s, %s, %s, %s, %s, %s, %s)""",
                (e.host, e.at, e.decision, Jsonb(e.reasons), Jsonb(e.signals), e.idle_since, e.stop_at),
            )

    def event(self, event: Event) -> None:
        with self._conn() as conn:
            conn.execute(
                "INSERT INTO vm_events (host, at, kind, detail) VALUES (%s, %s, %s, %s)",
                (event.host, event.at, event.kind, Jsonb(event.detail)),
            )

    def evaluations(self, host: str, limit: int = 50) -> list[Evaluation]:
        with self._conn() as conn:
            rows = conn.execute(
                """SELECT host, at, decision, reasons, signals, idle_since, stop_at FROM vm_evaluations
                   WHERE host = %s ORDER BY at DESC, id DESC LIMIT %s""",
                (host, limit),
            ).fetchall()
        return [Evaluation(**r) for r in rows]

    def events(self, host: str, limit: int = 50) -> list[Event]:
        with self._conn() as conn:
            rows = conn.execute(
                "SELECT host, at, kind, detail FROM vm_events WHERE host = %s ORDER BY at DESC, id DESC LIMIT %s",
                (host, limit),
            ).fetchall()
        return [Event(**r) for r in rows]

    def prune(self, before: datetime) -> None:
        with self._conn() as conn:
            conn.execute("DELETE FROM vm_evaluations WHERE at < %s", (before,))


class FileStore:
    """One JSON document (countdowns, recent evaluations and events), replaced atomically under `flock`."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @contextmanager
    def _locked(self) -> Iterator[dict[str, Any]]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_name(self.path.name + ".lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            data = self._read()
            yield data
            tmp = self.path.with_name(self.path.name + ".tmp")
            tmp.write_text(json.dumps(data, default=str), encoding="utf-8")
            os.replace(tmp, self.path)

    def _read(self) -> dict[str, Any]:
        if not self.path.exists():
            return {"states": {}, "evaluations": [], "events": []}
        return json.loads(self.path.read_text(encoding="utf-8"))

    def transact(self, host: str, change: Callable[[Countdown], tuple[Countdown, T]]) -> T:
        with self._locked() as data:
            state, result = change(Countdown.from_json(data["states"].get(host, {})))
            data["states"][host] = state.to_json()
            return result

    def load(self, host: str) -> Countdown:
        return Countdown.from_json(self._read()["states"].get(host, {}))

    def record(self, evaluation: Evaluation) -> None:
        with self._locked() as data:
            data["evaluations"] = [*data["evaluations"], asdict(evaluation)][-_FILE_EVALUATIONS:]

    def event(self, event: Event) -> None:
        with self._locked() as data:
            data["events"] = [*data["events"], asdict(event)][-_FILE_EVENTS:]

    def evaluations(self, host: str, limit: int = 50) -> list[Evaluation]:
        rows = [r for r in reversed(self._read()["evaluations"]) if r["host"] == host][:limit]
        return [Evaluation(**_dates(r, "at", "idle_since", "stop_at")) for r in rows]

    def events(self, host: str, limit: int = 50) -> list[Event]:
        rows = [r for r in reversed(self._read()["events"]) if r["host"] == host][:limit]
        return [Event(**_dates(r, "at")) for r in rows]

    def prune(self, before: datetime) -> None:
        """The file keeps a bounded number of rows already."""


def _dates(row: dict[str, Any], *keys: str) -> dict[str, Any]:
    return row | {k: datetime.fromisoformat(row[k]) if row.get(k) else None for k in keys}


def open_store(settings: Settings) -> Store:
    """The database when one is configured (the console sees it), else the local state file."""
    if settings.database_url:
        return DbStore(settings.database_url)
    return FileStore(settings.autoshutdown_state_file)

