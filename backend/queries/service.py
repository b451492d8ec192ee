"""What the console and the CLI call for the fleet's read models: every GPU with status and latest sample, host
rollups, one GPU's detail and time series, top offenders. Viewers and up; each call opens its own connection under
the statement timeout (QUERY_STATEMENT_TIMEOUT_S).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from backend.config import Settings, get_settings
from backend.db.connection import query_connection
from backend.identity.principal import Principal, Role, require_role
from backend.queries import fleet, offenders, timeseries
from backend.queries.fleet import GpuDetail, GpuSummary, HostRollup, RollupKey
from backend.queries.offenders import Kind, Offender
from backend.queries.timeseries import TimeSeries

PAGE = 1000


def _stale_after(settings: Settings) -> timedelta:
    return timedelta(seconds=settings.health_stale_after_s)


def all_gpus(principal: Principal, *, settings: Settings | None = None) -> list[GpuSummary]:
    """Every GPU with its status and latest sample, ordered by host and index (read in pages of 1000)."""
    settings = settings or get_settings()
    require_role(principal, Role.viewer, "view the fleet")
    items: list[GpuSummary] = []
    with query_connection(settings) as conn:
        while True:
            page = fleet.fleet_overview(conn, limit=PAGE, offset=len(items), stale_after=_stale_after(settings))
            items.extend(page.items)
            if len(items) >= page.total or not page.items:
                return items


def host_rollup(principal: Principal, *, by: RollupKey = "host", settings: Settings | None = None
                ) -> list[HostRollup]:
    """Per host (or datacenter): GPU count, models, status counts, latest temperature, utilization and power."""
    settings = settings or get_settings()
    require_role(principal, Role.viewer, "view the fleet")
    with query_connection(settings) as conn:
        return fleet.host_rollup(conn, by=by, stale_after=_stale_after(settings))


def gpu_detail(principal: Principal, gpu_uuid: str, *, settings: Settings | None = None) -> GpuDetail:
    """One GPU: inventory, every metric of its latest sample, status with findings, and failure risk."""
    settings = settings or get_settings()
    require_role(principal, Role.viewer, "view a GPU")
    with query_connection(settings) as conn:
        return fleet.gpu_detail(conn, gpu_uuid, stale_after=_stale_after(settings))


def gpu_timeseries(principal: Principal, gpu_uuid: str, start: datetime, end: datetime, metrics: str | list[str], *,
                   limit: int = 2000, bands: bool = True, settings: Settings | None = None) -> TimeSeries:
    """Points in [start, end) for the named metrics at the resolution the range calls for."""
    require_role(principal, Role.viewer, "view GPU telemetry")
    with query_connection(settings) as conn:
        return timeseries.gpu_timeseries(conn, gpu_uuid, start, end, metrics, limit=limit, bands=bands)


def top_offenders(principal: Principal, kind: Kind, start: datetime, end: datetime, *, n: int = 10,
                  settings: Settings | None = None) -> list[Offender]:
    """The `n` worst GPUs in [start, end) by `kind` (hottest, ecc, throttled)."""
    require_role(principal, Role.viewer, "view top offenders")
    with query_connection(settings) as conn:
        return offenders.top_offenders(conn, kind, start, end, n=n)


def offenders_by_kind(principal: Principal, start: datetime, end: datetime, *, n: int = 10,
                      settings: Settings | None = None) -> dict[Kind, list[Offender]]:
    """The `n` worst GPUs in [start, end) for every kind at once: one pass over the rollups, not three."""
    require_role(principal, Role.viewer, "view top offenders")
    with query_connection(settings) as conn:
        return offenders.offenders_by_kind(conn, start, end, n=n)
