"""The shared audit log: who did what to which target, with what outcome. Never pass secret values here.

Each row also names the OS account of the process that wrote it: a CLI row's actor is only what `--as` said,
the OS user is who ran the command.
"""

from __future__ import annotations

import os
import pwd
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any, Literal

import psycopg
from psycopg.types.json import Jsonb

Outcome = Literal["ok", "denied", "error"]


@dataclass(frozen=True)
class AuditEntry:
    id: int
    at: datetime
    actor: str
    area: str
    action: str
    target: str | None
    outcome: Outcome
    detail: dict[str, Any]
    os_user: str | None
    """None on rows written before the column existed."""


@cache
def os_user() -> str:
    """This process's OS account, from its real uid: `$USER` and `$LOGNAME` are whatever the caller sets."""
    uid = os.getuid()
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:  # a container's uid without a passwd entry
        return f"uid {uid}"


def record(
    conn: psycopg.Connection,
    *,
    actor: str,
    area: str,
    action: str,
    outcome: Outcome,
    target: str | None = None,
    detail: dict[str, Any] | None = None,
) -> None:
    conn.execute(
        "INSERT INTO audit_log (actor, area, action, target, outcome, detail, os_user) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s)",
        (actor, area, action, target, outcome, Jsonb(detail or {}), os_user()),
    )


def entries(
    conn: psycopg.Connection,
    *,
    area: str | None = None,
    actor: str | None = None,
    target: str | None = None,
    limit: int = 200,
) -> list[AuditEntry]:
    """Newest first, optionally filtered."""
    rows = conn.execute(
        """SELECT id, at, actor, area, action, target, outcome, detail, os_user FROM audit_log
           WHERE (%(area)s::text IS NULL OR area = %(area)s)
             AND (%(actor)s::text IS NULL OR actor = %(actor)s)
             AND (%(target)s::text IS NULL OR target = %(target)s)
           ORDER BY id DESC LIMIT %(limit)s""",
        {"area": area, "actor": actor, "target": target, "limit": limit},
    ).fetchall()
    return [AuditEntry(**row) for row in rows]
