"""Demo data that a week of operations would have left: secrets with versions and labels (one due for rotation),
an alert timeline with resolved and acknowledged alerts, and a stream scheduled for the next minutes. Everything
goes through the areas' own code (the secrets and streams services, the alert lifecycle), and a second start of the
demo adds nothing twice.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime, timedelta

from backend.config import Settings
from backend.db import connect
from backend.health import alerts as alert_store
from backend.health import service as health_service
from backend.health.findings import Finding, GpuHealth
from backend.health.transitions import AlertPolicy
from backend.identity.principal import SYSTEM
from backend.secrets.models import SecretSpec
from backend.secrets.service import get_service
from backend.streams import service as streams
from backend.streams.schedules import Schedule

log = logging.getLogger(__name__)

ROTATION_TOPIC = "projects/demo-project/topics/secret-rotation"
SCHEDULED_VM, SCHEDULED_STREAM, SCHEDULED_NAME = "gpu-node-04", "keynote", "Launch keynote"
"""The scheduled stream goes on the VM that auto-shutdown stops within the demo's first minute (fleet `autostop`)."""
SCHEDULE_GRACE, SCHEDULE_LENGTH = timedelta(minutes=1), timedelta(minutes=15)


def seed_secrets(settings: Settings, now: datetime | None = None) -> int:
    """Three secrets (labels, several versions); the payment key's rotation is due in two days. Returns how many
    were created (0 when they exist already)."""
    now = now or datetime.now(UTC)
    service = get_service(settings)
    existing = {meta.name for meta in service.list_all(SYSTEM)}
    plans = [
        ("payments-api-key", ["pk_demo_v1", "pk_demo_v2", "pk_demo_v3"],
         SecretSpec(labels={"team": "payments", "env": "demo"}, rotation_period=timedelta(days=30),
                    next_rotation_time=now + timedelta(days=2), topics=(ROTATION_TOPIC,))),
        ("cdn-signing-key", ["cdn_demo_v1", "cdn_demo_v2"],
         SecretSpec(labels={"team": "streaming", "env": "demo"}, rotation_period=timedelta(days=90),
                    next_rotation_time=now + timedelta(days=60), topics=(ROTATION_TOPIC,))),
        ("webhook-token", ["whk_demo_v1"],
         SecretSpec(labels={"team": "ops", "env": "demo"})),
    ]
    created = 0
    for name, values, spec in plans:
        if name in existing:
            continue
        service.create(SYSTEM, name, spec, values[0])
        for value in values[1:]:
            service.add_version(SYSTEM, name, value)
        created += 1
    return created


def seed_scheduled_stream(settings: Settings, now: datetime | None = None,
                          vm_starts_in: timedelta = timedelta(minutes=3)) -> Schedule | None:
    """A stream scheduled on gpu-node-04 so that the scheduler (`vm start-scheduled`) starts the VM `vm_starts_in`
    from now, after auto-shutdown has stopped it: it starts `STREAMS_SCHEDULE_LEAD_SECONDS` later. Meanwhile the
    VMs page shows "starts at … for stream …" beside the stopped VM; auto-shutdown holds it from the start time
    minus grace and lead (from `vm_starts_in - SCHEDULE_GRACE`) to the end plus grace. None when one is still upcoming
    or open from an earlier start of the demo."""
    now = now or datetime.now(UTC)
    if any(s.name == SCHEDULED_NAME for s in streams.list_schedules(SYSTEM, vm=SCHEDULED_VM, settings=settings)):
        return None
    key = streams.create_key(SYSTEM, SCHEDULED_STREAM, owner="demo", labels={"vm": SCHEDULED_VM, "demo": "scheduled"},
                             settings=settings).key
    start = now + vm_starts_in + timedelta(seconds=settings.streams_schedule_lead_seconds)
    return streams.schedule_stream(SYSTEM, SCHEDULED_NAME, key.id, SCHEDULED_VM, start, start + SCHEDULE_LENGTH,
                                   grace=SCHEDULE_GRACE, settings=settings)


def seed_alert_history(settings: Settings, now: datetime | None = None) -> int:
    """Two alerts of the past week, opened and resolved by the alert lifecycle at their own times (the GPUs are the
    busy hosts' first GPUs). Returns how many were opened (0 when the history is there already)."""
    now = now or datetime.now(UTC)
    policy = AlertPolicy.from_settings(settings)
    with connect(settings, autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM alerts WHERE opened_at < %s LIMIT 1", (now - timedelta(days=1),)).fetchone():
            return 0
        gpus = conn.execute("""SELECT gpu_uuid, host, gpu_index, model FROM gpus
                               WHERE host IN ('gpu-node-00', 'gpu-node-01') AND gpu_index = 3
                               ORDER BY host""").fetchall()
        episodes = [(timedelta(days=6, hours=3), "thermal_violation", "warning", "Thermal throttling",
                     "Check cooling, fans and airflow around the GPU"),
                    (timedelta(days=2, hours=7), "pcie_replay_rate", "warning", "PCIe replays",
                     "Reseat the GPU or check the riser at the next maintenance window")]
        for gpu, (ago, rule, severity, title, action) in zip(gpus, episodes, strict=False):
            opened = now - ago
            finding = Finding(rule, severity, title, {"demo": "seeded history"}, opened, action)  # type: ignore[arg-type]
            firing = GpuHealth(gpu["gpu_uuid"], gpu["host"], gpu["gpu_index"], gpu["model"], "warning", [finding])
            alert_store.reconcile(conn, [firing], opened, policy)
            clear = GpuHealth(gpu["gpu_uuid"], gpu["host"], gpu["gpu_index"], gpu["model"], "healthy", [])
            for step in range(1, policy.resolve_after_evaluations + 2):
                alert_store.reconcile(conn, [clear], opened + timedelta(minutes=20 + 5 * step), policy)
        return min(len(gpus), len(episodes))


def acknowledge_one(settings: Settings, timeout_s: float = 90.0, poll_s: float = 2.0) -> int | None:
    """Acknowledge the oldest open alert once the alert loop has opened one (as an operator would); its id, or
    None when none opened within `timeout_s` or one is acknowledged already."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        current = health_service.list_alerts(SYSTEM, states=("open", "acknowledged"), settings=settings)
        if any(a.state == "acknowledged" for a in current):
            return None
        opened = sorted((a for a in current if a.state == "open"), key=lambda a: a.opened_at)
        if opened:
            health_service.acknowledge(SYSTEM, opened[0].id, "demo: on it, replacing the fan tray",
                                       settings=settings)
            return opened[0].id
        time.sleep(poll_s)
    log.info("no open alert to acknowledge within %.0f s", timeout_s)
    return None
