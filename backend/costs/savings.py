"""The savings ledger: every auto-shutdown stop and the start after it, priced. The one source of savings figures.

The agent writes its stops to `vm_events` (`stopped`: a real stop through its action, `would_stop`: a dry run)
and the next boot as `booted`. Each stop becomes a ledger row: VM, GPUs, $/hour, stopped_at, started_at. The
hours counted run from the stop to the first of: the next start (`booted`), the host's next stop event, the
horizon after the stop (default 24 h: a VM nobody restarted is not assumed to save for ever) and now.

Saved = counted hours × (the host's GPUs at the catalog price in effect at each moment, split at price changes
+ the VM's other hourly price from `vm_prices` when it has one). GPUs of unpriced models are reported as
unpriced GPU-hours, not as free savings. Dry runs (`would_stop`) never add to "saved": they are shown apart as
"would have saved", counted until the VM was next active (an `active` evaluation) or the same caps. A manual
stop by an operator (`vm stop`, the console) writes no agent event and is never counted.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import psycopg

from backend.costs.catalog import KIND_OF_GPU_SQL
from backend.errors import InvalidInput
from backend.queries.timeseries import as_utc, check_range

DEFAULT_HORIZON = timedelta(hours=24)
MIN_HORIZON = timedelta(minutes=1)
COUNTED, DRY_RUN = "stopped", "would_stop"


def _hours(a: datetime, b: datetime) -> float:
    return max((b - a).total_seconds(), 0.0) / 3600


@dataclass(frozen=True)
class Priced:
    """What a host costs over a span: GPU-hours, the unpriced part, GPU dollars and the VM's other dollars."""

    gpu_hours: float = 0.0
    unpriced_gpu_hours: float = 0.0
    gpu_usd: float = 0.0
    vm_usd: float = 0.0

    @property
    def usd(self) -> float:
        return self.gpu_usd + self.vm_usd


class HostRates:
    """The hourly price of hosts from the inventory (`gpus`) and the catalogs (`gpu_prices`, `vm_prices`).

    Loaded once per host and priced in memory, so the ledger and cost per stream price many spans cheaply.
    """

    def __init__(self, conn: psycopg.Connection) -> None:
        self.conn = conn
        self._hosts: dict[str, tuple[list[list[tuple[float, datetime, datetime | None]]], float | None]] = {}

    def _load(self, host: str) -> tuple[list[list[tuple[float, datetime, datetime | None]]], float | None]:
        if host not in self._hosts:
            rows = self.conn.execute(
                f"""SELECT g.gpu_uuid, p.usd_per_gpu_hour, p.effective_from, p.effective_to
                    FROM gpus g LEFT JOIN gpu_prices p
                      ON lower(p.gpu_model) = lower(coalesce(g.model, '')) AND p.pricing_kind = {KIND_OF_GPU_SQL}
                    WHERE g.host = %s ORDER BY g.gpu_uuid, p.effective_from""",
                (host,),
            ).fetchall()
            vm = self.conn.execute("SELECT usd_per_hour FROM vm_prices WHERE host = %s", (host,)).fetchone()
            by_gpu: dict[str, list[tuple[float, datetime, datetime | None]]] = {}
            for r in rows:
                periods = by_gpu.setdefault(r["gpu_uuid"], [])
                if r["usd_per_gpu_hour"] is not None:
                    periods.append((float(r["usd_per_gpu_hour"]), r["effective_from"], r["effective_to"]))
            priced_gpus = list(by_gpu.values())
            self._hosts[host] = (priced_gpus, float(vm["usd_per_hour"]) if vm else None)
        return self._hosts[host]

    def gpus(self, host: str) -> int:
        return len(self._load(host)[0])

    def usd_per_hour(self, host: str, at: datetime) -> float:
        """GPUs at the prices in effect at `at`, plus the VM's other price."""
        gpus, vm = self._load(host)
        return sum(usd for periods in gpus for usd, lo, hi in periods if lo <= at and (hi is None or at < hi)) + (
            vm or 0.0)

    def price(self, host: str, a: datetime, b: datetime, *, with_vm: bool = True) -> Priced:
        """The host's cost over [a, b): each GPU at the price of each moment, plus the VM's other price."""
        gpus, vm = self._load(host)
        hours = _hours(a, b)
        usd = priced = 0.0
        for periods in gpus:
            for rate, lo, hi in periods:
                part = _hours(max(a, lo), min(b, hi or b))
                priced += part
                usd += rate * part
        vm_usd = (vm or 0.0) * hours if with_vm else 0.0
        return Priced(hours * len(gpus), hours * len(gpus) - priced, usd, vm_usd)


@dataclass(frozen=True)
class LedgerRow:
    host: str
    kind: str
    """`stopped` (a real auto-stop, counted) or `would_stop` (a dry run: "would have saved")."""
    action: str
    gpus: int
    usd_per_hour: float
    """The GPUs' catalog price at the stop plus the VM's other price (when the catalog has one)."""
    stopped_at: datetime
    started_at: datetime | None
    """The next start (for a dry run: the VM was next active); None while it stays stopped."""
    counted_until: datetime
    """Where the counted hours end: the next start, the horizon or now, whichever comes first."""
    hours: float
    saved_gpu_hours: float
    unpriced_gpu_hours: float
    saved_usd: float


@dataclass(frozen=True)
class SavingsByKey:
    key: str
    hours: float
    saved_usd: float
    would_save_usd: float


@dataclass(frozen=True)
class SavingsLedger:
    start: datetime
    end: datetime
    horizon_hours: float
    assumption: str
    """The counting rule in one sentence, to print beside the figure."""
    saved_usd: float
    saved_gpu_hours: float
    unpriced_gpu_hours: float
    would_save_usd: float
    """What dry-run agents would have saved (never part of `saved_usd`)."""
    rows: list[LedgerRow]
    by_host: list[SavingsByKey]
    by_day: list[SavingsByKey]


def assumption(horizon: timedelta) -> str:
    return (f"auto-shutdown stops only; each counted until the next start or {horizon.total_seconds() / 3600:g} h, "
            "at catalog GPU prices plus the VM's other price where set; dry runs shown apart")


_STOPS = """
SELECT s.host, s.kind, s.at AS stopped_at, coalesce(s.detail->>'action', '') AS action,
       (SELECT min(b.at) FROM vm_events b WHERE b.host = s.host AND b.kind = 'booted' AND b.at > s.at) AS booted_at,
       (SELECT min(n.at) FROM vm_events n WHERE n.host = s.host AND n.kind IN ('stopped', 'would_stop')
          AND n.at > s.at) AS next_stop_at,
       CASE WHEN s.kind = 'would_stop' THEN
           (SELECT min(e.at) FROM vm_evaluations e WHERE e.host = s.host AND e.decision = 'active' AND e.at > s.at)
       END AS active_at
FROM vm_events s
WHERE s.kind IN ('stopped', 'would_stop') AND s.at < %(end)s AND s.at >= %(start)s - %(horizon)s
ORDER BY s.at, s.id"""


def savings_ledger(conn: psycopg.Connection, start: datetime, end: datetime, *,
                   horizon: timedelta = DEFAULT_HORIZON, now: datetime | None = None) -> SavingsLedger:
    """Ledger rows of the stops whose counted hours fall in [start, end), with totals by host and by UTC day."""
    start, end = check_range(start, end)
    if horizon < MIN_HORIZON:
        raise InvalidInput("the savings horizon must be at least one minute")
    now = as_utc(now) if now else datetime.now(UTC)
    rates = HostRates(conn)
    rows: list[LedgerRow] = []
    by_host: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0])
    by_day: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0])
    for r in conn.execute(_STOPS, {"start": start, "end": end, "horizon": horizon}).fetchall():
        restarted = min((t for t in (r["booted_at"], r["active_at"]) if t is not None), default=None)
        until = min(t for t in (restarted, r["next_stop_at"], r["stopped_at"] + horizon, now) if t is not None)
        a, b = max(r["stopped_at"], start), min(until, end)
        if b <= a:
            continue
        priced = rates.price(r["host"], a, b)
        rows.append(LedgerRow(r["host"], r["kind"], r["action"], rates.gpus(r["host"]),
                              rates.usd_per_hour(r["host"], r["stopped_at"]), r["stopped_at"], restarted, until,
                              _hours(a, b), priced.gpu_hours, priced.unpriced_gpu_hours, priced.usd))
        slot = 1 if r["kind"] == COUNTED else 2
        by_host[r["host"]][0] += _hours(a, b) if slot == 1 else 0.0
        by_host[r["host"]][slot] += priced.usd
        for day, lo, hi in _days(a, b):
            by_day[day][0] += _hours(lo, hi) if slot == 1 else 0.0
            by_day[day][slot] += rates.price(r["host"], lo, hi).usd
    counted = [row for row in rows if row.kind == COUNTED]
    return SavingsLedger(
        start, end, horizon.total_seconds() / 3600, assumption(horizon),
        sum(row.saved_usd for row in counted), sum(row.saved_gpu_hours for row in counted),
        sum(row.unpriced_gpu_hours for row in counted), sum(row.saved_usd for row in rows if row.kind == DRY_RUN),
        rows,
        sorted((SavingsByKey(k, *v) for k, v in by_host.items()), key=lambda s: (-s.saved_usd, s.key)),
        [SavingsByKey(k, *v) for k, v in sorted(by_day.items())],
    )


def _days(a: datetime, b: datetime) -> list[tuple[str, datetime, datetime]]:
    """[a, b) cut at UTC midnights."""
    pieces = []
    a, b = a.astimezone(UTC), b.astimezone(UTC)
    while a < b:
        midnight = datetime(a.year, a.month, a.day, tzinfo=UTC) + timedelta(days=1)
        pieces.append((f"{a:%Y-%m-%d}", a, min(b, midnight)))
        a = min(b, midnight)
    return pieces
