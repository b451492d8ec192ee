"""What the console and the CLI call for costs: spend summaries, $/1M tokens, the month-end projection and the price
catalog, the savings ledger of auto-shutdown and cost per stream. Viewers read; admins set prices (audited).

The idle threshold defaults to COST_IDLE_UTIL_THRESHOLD; the console passes the one its user picked.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

from backend.config import Settings, get_settings
from backend.costs import catalog, projection, savings, spend, stream_costs, tokens
from backend.costs.catalog import Price, VmPrice
from backend.costs.projection import MonthProjection
from backend.costs.savings import SavingsLedger
from backend.costs.spend import CostSummary
from backend.costs.stream_costs import StreamCosts
from backend.costs.tokens import TokenCost
from backend.db.connection import query_connection
from backend.errors import InvalidInput
from backend.identity.principal import Principal, Role, require_role


def cost_summary(principal: Principal, start: datetime, end: datetime, *, group_by: str = "total",
                 idle_threshold_pct: float | None = None, settings: Settings | None = None) -> CostSummary:
    """GPU-hours, spend, idle and used cost in [start, end) per group (`spend.GROUPS`)."""
    settings = settings or get_settings()
    require_role(principal, Role.viewer, "view spend")
    idle = settings.cost_idle_util_threshold if idle_threshold_pct is None else idle_threshold_pct
    with query_connection(settings) as conn:
        return spend.cost_summary(conn, start, end, group_by=group_by, idle_threshold_pct=idle)


def month_projection(principal: Principal, as_of: datetime | None = None, *, trailing: timedelta = projection.DAY,
                     idle_threshold_pct: float | None = None, settings: Settings | None = None) -> MonthProjection:
    """Month-to-date spend and the month-end projection from the `trailing` run rate."""
    settings = settings or get_settings()
    require_role(principal, Role.viewer, "view spend")
    idle = settings.cost_idle_util_threshold if idle_threshold_pct is None else idle_threshold_pct
    with query_connection(settings) as conn:
        return projection.month_projection(conn, as_of, trailing=trailing, idle_threshold_pct=idle)


def token_costs(principal: Principal, start: datetime, end: datetime, *,
                settings: Settings | None = None) -> list[TokenCost]:
    """Cost per million tokens per served model in [start, end)."""
    require_role(principal, Role.viewer, "view token costs")
    with query_connection(settings) as conn:
        return tokens.token_costs(conn, start, end)


def list_prices(principal: Principal, *, model: str | None = None, at: datetime | None = None, history: bool = False,
                settings: Settings | None = None) -> list[Price]:
    """Prices in effect at `at` (default now), or every period with `history`."""
    require_role(principal, Role.viewer, "view GPU prices")
    with query_connection(settings) as conn:
        return catalog.list_prices(conn, model=model, at=at, history=history)


def set_price(principal: Principal, gpu_model: str, pricing_kind: str, usd_per_gpu_hour: str | float | Decimal, *,
              effective_from: datetime | None = None, source: str = "", settings: Settings | None = None) -> Price:
    """Start a new price for (model, kind), closing the open one (admin, audited); the kind and the amount are
    checked here (`catalog.parse_kind`, `catalog.parse_amount`)."""
    require_role(principal, Role.admin, "edit GPU prices")
    kind, amount = catalog.parse_kind(pricing_kind), catalog.parse_amount(usd_per_gpu_hour)
    with query_connection(settings) as conn:
        return catalog.set_price(conn, principal, gpu_model, kind, amount, effective_from=effective_from,
                                 source=source)


def list_vm_prices(principal: Principal, *, settings: Settings | None = None) -> list[VmPrice]:
    """Every VM's hourly price beyond its GPUs."""
    require_role(principal, Role.viewer, "view VM prices")
    with query_connection(settings) as conn:
        return catalog.list_vm_prices(conn)


def set_vm_price(principal: Principal, host: str, usd_per_hour: str | float | Decimal, *, source: str = "",
                 settings: Settings | None = None) -> VmPrice:
    """Set a VM's hourly price beyond its GPUs (admin, audited)."""
    require_role(principal, Role.admin, "edit VM prices")
    amount = catalog.parse_amount(usd_per_hour)
    with query_connection(settings) as conn:
        return catalog.set_vm_price(conn, principal, host, amount, source=source)


def savings_ledger(principal: Principal, start: datetime, end: datetime, *, horizon_hours: float | None = None,
                   settings: Settings | None = None) -> SavingsLedger:
    """What auto-shutdown saved in [start, end): the ledger of real stops (dry runs apart), by VM and by day.
    The horizon defaults to SAVINGS_HORIZON_HOURS."""
    settings = settings or get_settings()
    require_role(principal, Role.viewer, "view auto-shutdown savings")
    hours = settings.savings_horizon_hours if horizon_hours is None else horizon_hours
    if not 1 / 60 <= hours <= 24 * 366:
        raise InvalidInput("the savings horizon must be between one minute and 8784 hours")
    with query_connection(settings) as conn:
        return savings.savings_ledger(conn, start, end, horizon=timedelta(hours=hours))


def stream_costs_of(principal: Principal, start: datetime, end: datetime, *, group_by: str = "stream",
                    settings: Settings | None = None) -> StreamCosts:
    """Cost per stream session in [start, end), grouped by stream, key, owner, host or label:<name>."""
    require_role(principal, Role.viewer, "view stream costs")
    with query_connection(settings) as conn:
        return stream_costs.stream_costs(conn, start, end, group_by=group_by)
