"""The GPU price catalog: $/GPU-hour per GPU model and pricing kind, with effective periods.

List prices move often, so they live in a table people edit (admins only, audited) rather than in code. A new
price for a (model, kind) closes the open period at its start, so periods never overlap and past spend keeps
the price that applied at the time.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Literal, get_args

import psycopg

from backend import audit
from backend.errors import InvalidInput
from backend.identity.principal import Principal, Role, require_role

PricingKind = Literal["on_demand", "spot", "committed"]
PRICING_KINDS: tuple[str, ...] = get_args(PricingKind)
DEFAULT_KIND: PricingKind = "on_demand"
PRICING_LABEL = "pricing_kind"
"""A GPU whose inventory labels carry `pricing_kind=spot` (or `committed`) is priced that way; else on-demand."""

KIND_OF_GPU_SQL = (
    f"CASE WHEN g.labels->>'{PRICING_LABEL}' IN ({', '.join(repr(k) for k in PRICING_KINDS)}) "
    f"THEN g.labels->>'{PRICING_LABEL}' ELSE '{DEFAULT_KIND}' END"
)
"""SQL for the pricing kind of a GPU row aliased `g` (from its `pricing_kind` label, else on-demand)."""

_COLUMNS = "id, gpu_model, pricing_kind, usd_per_gpu_hour, effective_from, effective_to, source, updated_by, updated_at"


@dataclass(frozen=True)
class Price:
    id: int
    gpu_model: str
    pricing_kind: str
    usd_per_gpu_hour: Decimal
    effective_from: datetime
    effective_to: datetime | None
    source: str
    updated_by: str
    updated_at: datetime


def parse_kind(value: str) -> PricingKind:
    if value not in PRICING_KINDS:
        raise InvalidInput(f"unknown pricing kind {value!r}: choose {', '.join(PRICING_KINDS)}")
    return value  # type: ignore[return-value]


def parse_amount(value: str | float | Decimal) -> Decimal:
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        raise InvalidInput(f"price {value!r} is not a number") from None
    if not amount.is_finite() or amount < 0 or amount >= Decimal("1000000"):
        raise InvalidInput(f"price {value!r} must be between 0 and 999999.99 USD per GPU-hour")
    return amount


def list_prices(
    conn: psycopg.Connection, *, model: str | None = None, at: datetime | None = None, history: bool = False
) -> list[Price]:
    """Prices in effect at `at` (default now), or every period with `history`; ordered by model and kind."""
    rows = conn.execute(
        f"""SELECT {_COLUMNS} FROM gpu_prices
            WHERE (%(model)s::text IS NULL OR lower(gpu_model) = lower(%(model)s))
              AND (%(history)s OR (effective_from <= %(at)s AND (effective_to IS NULL OR effective_to > %(at)s)))
            ORDER BY lower(gpu_model), pricing_kind, effective_from""",
        {"model": model, "history": history, "at": at or datetime.now(UTC)},
    )
    return [Price(**r) for r in rows]


def set_price(
    conn: psycopg.Connection,
    actor: Principal,
    gpu_model: str,
    pricing_kind: PricingKind,
    usd_per_gpu_hour: Decimal,
    *,
    effective_from: datetime | None = None,
    source: str = "",
) -> Price:
    """Start a new price for (model, kind) at `effective_from` (default now), closing the open one (admin only)."""
    require_role(actor, Role.admin, "edit GPU prices")
    gpu_model = gpu_model.strip()
    if not 1 <= len(gpu_model) <= 128:
        raise InvalidInput("GPU model must be 1-128 characters, as NVML reports it (e.g. 'NVIDIA L4')")
    parse_kind(pricing_kind)
    amount = parse_amount(usd_per_gpu_hour)
    start = effective_from or datetime.now(UTC)
    if start.tzinfo is None:
        start = start.replace(tzinfo=UTC)
    with conn.transaction():
        current = conn.execute(
            "SELECT id, effective_from FROM gpu_prices WHERE lower(gpu_model) = lower(%s) AND pricing_kind = %s "
            "AND effective_to IS NULL FOR UPDATE",
            (gpu_model, pricing_kind),
        ).fetchone()
        if current and current["effective_from"] >= start:
            raise InvalidInput(f"a price for {gpu_model} ({pricing_kind}) already starts at "
                               f"{current['effective_from']:%Y-%m-%d %H:%M} UTC; a new one must start later")
        if current:
            conn.execute("UPDATE gpu_prices SET effective_to = %s WHERE id = %s", (start, current["id"]))
        row = conn.execute(
            f"""INSERT INTO gpu_prices (gpu_model, pricing_kind, usd_per_gpu_hour, effective_from, source, updated_by)
                VALUES (%s, %s, %s, %s, %s, %s) RETURNING {_COLUMNS}""",
            (gpu_model, pricing_kind, amount, start, source.strip(), actor.name),
        ).fetchone()
        audit.record(conn, actor=actor.name, area="costs", action="price.set", target=f"{gpu_model}/{pricing_kind}",
                     outcome="ok", detail={"usd_per_gpu_hour": str(amount), "effective_from": start.isoformat(),
                                           "replaced": current["id"] if current else None})
    return Price(**row)


@dataclass(frozen=True)
class VmPrice:
    host: str
    usd_per_hour: Decimal
    """What the VM costs per hour beyond its GPUs (vCPU, memory, disk)."""
    source: str
    updated_by: str
    updated_at: datetime


def list_vm_prices(conn: psycopg.Connection) -> list[VmPrice]:
    return [VmPrice(**r) for r in conn.execute(
        "SELECT host, usd_per_hour, source, updated_by, updated_at FROM vm_prices ORDER BY host")]


def set_vm_price(conn: psycopg.Connection, actor: Principal, host: str, usd_per_hour: Decimal, *,
                 source: str = "") -> VmPrice:
    """Set a VM's hourly price beyond its GPUs (admin only, audited); savings add it to the GPU price."""
    require_role(actor, Role.admin, "edit VM prices")
    host = host.strip()
    if not 1 <= len(host) <= 253:
        raise InvalidInput("host must be 1-253 characters, as the agent and the GPU inventory name it")
    amount = parse_amount(usd_per_hour)
    with conn.transaction():
        row = conn.execute(
            """INSERT INTO vm_prices (host, usd_per_hour, source, updated_by) VALUES (%s, %s, %s, %s)
               ON CONFLICT (host) DO UPDATE SET usd_per_hour = EXCLUDED.usd_per_hour, source = EXCLUDED.source,
                   updated_by = EXCLUDED.updated_by, updated_at = now()
               RETURNING host, usd_per_hour, source, updated_by, updated_at""",
            (host, amount, source.strip(), actor.name),
        ).fetchone()
        audit.record(conn, actor=actor.name, area="costs", action="vm_price.set", target=host, outcome="ok",
                     detail={"usd_per_hour": str(amount)})
    return VmPrice(**row)
