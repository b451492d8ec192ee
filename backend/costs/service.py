"""What the console and the CLI call for costs: spend summaries, $/1M tokens, the month-end projection and the price
catalog. Viewers read; admins set prices (audited). Auto-shutdown savings come from `backend.vm.service`.

The idle threshold defaults to COST_IDLE_UTIL_THRESHOLD; the console passes the one its user picked.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

from backend.config import Settings, get_settings
from backend.costs import catalog, projection, spend, tokens
from backend.costs.catalog import Price
from backend.costs.projection import MonthProjection
from backend.costs.spend import CostSummary
from backend.costs.tokens import TokenCost
from backend.db.connection import query_connection
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
