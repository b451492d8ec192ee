"""Which metrics a caller may ask for, and which rollup column answers for each.

Names are validated against the DCGM field catalog (`backend/telemetry/fields.py`) before they reach SQL, so a
metric name is never a way to inject SQL, and a typo is a clear `InvalidInput` naming the parameter.
"""

from __future__ import annotations

from collections.abc import Iterable

from backend.errors import InvalidInput
from backend.telemetry.fields import BY_COLUMN, FIELDS, Field


class BadParameter(InvalidInput):
    """An invalid query parameter; `field` names it so the API can say which one."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


def parse_metrics(names: str | Iterable[str] | None, *, parameter: str = "metrics") -> list[Field]:
    """Fields for `a,b,c` (or a list); unknown names raise `BadParameter` listing what is available."""
    if names is None:
        return []
    items = [n.strip() for n in (names.split(",") if isinstance(names, str) else names) if n.strip()]
    unknown = [n for n in items if n not in BY_COLUMN]
    if unknown:
        raise BadParameter(parameter, f"unknown metric(s) {', '.join(sorted(set(unknown)))}; "
                                      f"GET /api/v1/metrics lists the {len(FIELDS)} available")
    return [BY_COLUMN[n] for n in dict.fromkeys(items)]


def value_column(field: Field) -> str:
    """The rollup column that best stands for a bucket: the average of a gauge, the OR of a bitmask,
    the maximum (latest value) of a counter or code."""
    if field.kind == "gauge":
        return f"{field.column}_avg"
    if field.kind == "bitmask":
        return f"{field.column}_or"
    return f"{field.column}_max"


def rollup_columns(field: Field) -> tuple[str, ...]:
    """Every rollup column of a field, as the storage contract names them."""
    own = ("avg", "min", "max") if field.kind == "gauge" else ("min", "max")
    names = tuple(f"{field.column}_{suffix}" for suffix in own)
    return (*names, f"{field.column}_or") if field.kind == "bitmask" else names
