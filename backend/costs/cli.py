"""`stream-platform costs prices list|set`, `costs vm-prices list|set`, `costs summary`, `costs tokens`,
`costs projection`, `costs savings` (the auto-shutdown ledger) and `costs streams` (cost per stream)."""

from __future__ import annotations

from datetime import UTC, datetime

import typer
from rich.table import Table

from backend.cli_support import acting_principal, console, friendly_errors, print_json
from backend.costs import service
from backend.costs.spend import GROUPS
from backend.costs.stream_costs import GROUPS as STREAM_GROUPS
from backend.errors import InvalidInput
from backend.parsing import parse_duration

app = typer.Typer(help="GPU prices, spend, idle cost, $/1M tokens and the month-end projection.", no_args_is_help=True)
prices = typer.Typer(help="The GPU price catalog ($/GPU-hour per model and pricing kind).", no_args_is_help=True)
app.add_typer(prices, name="prices")
vm_prices = typer.Typer(help="VM prices beyond their GPUs ($/hour per host), added to auto-shutdown savings.",
                        no_args_is_help=True)
app.add_typer(vm_prices, name="vm-prices")


def _when(value: str | None, option: str) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidInput(f"{option}: {value!r} is not an ISO 8601 time like 2026-11-01T00:00:00Z") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _window(since: str, start: str | None, end: str | None) -> tuple[datetime, datetime]:
    stop = _when(end, "--end") or datetime.now(UTC)
    return _when(start, "--start") or stop - parse_duration(since, what="--since", bare_seconds=True), stop


def _money(value: float | None) -> str:
    return "-" if value is None else f"${value:,.2f}"


@prices.command("list")
@friendly_errors
def prices_list(
    model: str = typer.Option(None, "--model", help="only this GPU model"),
    history: bool = typer.Option(False, "--history", help="every period, not only the prices in effect now"),
    as_json: bool = typer.Option(False, "--json", help="print JSON"),
) -> None:
    """Prices in effect now (or their whole history)."""
    rows = service.list_prices(acting_principal(), model=model, history=history)
    if as_json:
        print_json(rows)
        return
    table = Table("model", "kind", "$/GPU-hour", "from", "to", "source")
    for p in rows:
        table.add_row(p.gpu_model, p.pricing_kind, f"{p.usd_per_gpu_hour:.4f}", f"{p.effective_from:%Y-%m-%d}",
                      f"{p.effective_to:%Y-%m-%d}" if p.effective_to else "open", p.source)
    console.print(table)


@prices.command("set")
@friendly_errors
def prices_set(
    model: str = typer.Argument(..., help="GPU model as NVML reports it, e.g. 'NVIDIA L4'"),
    usd_per_gpu_hour: str = typer.Argument(..., metavar="USD_PER_GPU_HOUR"),
    kind: str = typer.Option("on_demand", "--kind", help="on_demand, spot or committed"),
    effective_from: str = typer.Option(None, "--from", help="ISO 8601 start (default now)"),
    source: str = typer.Option("", "--source", help="where the number comes from"),
) -> None:
    """Start a new price (admin); the open period for the same model and kind ends where it begins."""
    price = service.set_price(acting_principal(), model, kind, usd_per_gpu_hour,
                              effective_from=_when(effective_from, "--from"), source=source)
    console.print(f"{price.gpu_model} ({price.pricing_kind}): ${price.usd_per_gpu_hour}/GPU-hour from "
                  f"{price.effective_from:%Y-%m-%d %H:%M} UTC", highlight=False)


@app.command("summary")
@friendly_errors
def summary(
    group_by: str = typer.Option("host", "--group-by", help=", ".join(GROUPS)),
    since: str = typer.Option("24h", "--since", help="window length when --start is not given"),
    start: str = typer.Option(None, "--start"),
    end: str = typer.Option(None, "--end", help="default now"),
    as_json: bool = typer.Option(False, "--json", help="print JSON"),
) -> None:
    """GPU-hours, spend, idle and used cost per group."""
    lo, hi = _window(since, start, end)
    result = service.cost_summary(acting_principal(), lo, hi, group_by=group_by)
    if as_json:
        print_json(result)
        return
    table = Table(group_by, "GPUs", "GPU-hours", "spend", "idle", "used", "$/GPU-h", "unpriced GPU-h")
    for r in [*result.rows, result.total]:
        table.add_row(r.key, str(r.gpus), f"{r.gpu_hours:,.1f}", _money(r.cost_usd), _money(r.idle_cost_usd),
                      _money(r.used_cost_usd), _money(r.usd_per_gpu_hour), f"{r.unpriced_gpu_hours:,.1f}")
    console.print(table)


@app.command("tokens")
@friendly_errors
def tokens(
    since: str = typer.Option("24h", "--since"),
    start: str = typer.Option(None, "--start"),
    end: str = typer.Option(None, "--end"),
    as_json: bool = typer.Option(False, "--json", help="print JSON"),
) -> None:
    """Cost per million tokens per served model."""
    lo, hi = _window(since, start, end)
    rows = service.token_costs(acting_principal(), lo, hi)
    if as_json:
        print_json(rows)
        return
    table = Table("served model", "GPUs", "tokens", "tokens/s/GPU", "GPU-hours", "cost", "$/1M tokens",
                  "uncosted tokens")
    for r in rows:
        rate = f"{r.tokens_per_second_per_gpu:,.0f}" if r.tokens_per_second_per_gpu else "-"
        per_m = f"${r.usd_per_million_tokens:,.4f}" if r.usd_per_million_tokens is not None else "-"
        table.add_row(r.served_model, str(r.gpus), f"{r.prompt_tokens + r.completion_tokens:,}", rate,
                      f"{r.gpu_hours:,.2f}", _money(r.cost_usd), per_m, f"{r.uncosted_tokens:,}")
    console.print(table)


@app.command("projection")
@friendly_errors
def projection(
    as_of: str = typer.Option(None, "--as-of", help="ISO 8601 (default now)"),
    trailing: str = typer.Option("24h", "--trailing", help="run-rate window"),
    as_json: bool = typer.Option(False, "--json", help="print JSON"),
) -> None:
    """Month-to-date spend and the month-end projection."""
    trailing_window = parse_duration(trailing, what="--trailing", bare_seconds=True)
    result = service.month_projection(acting_principal(), _when(as_of, "--as-of"), trailing=trailing_window)
    if as_json:
        print_json(result)
        return
    console.print(f"{result.month_start:%B %Y}: month to date {_money(result.month_to_date_usd)}, run rate "
                  f"{_money(result.run_rate_usd_per_day)}/day, {result.remaining_days:.1f} days left → projected "
                  f"[bold]{_money(result.projected_month_usd)}[/]", highlight=False)


@vm_prices.command("list")
@friendly_errors
def vm_prices_list(as_json: bool = typer.Option(False, "--json", help="print JSON")) -> None:
    """Every VM's hourly price beyond its GPUs."""
    rows = service.list_vm_prices(acting_principal())
    if as_json:
        print_json(rows)
        return
    table = Table("host", "$/hour", "source", "updated by")
    for p in rows:
        table.add_row(p.host, f"{p.usd_per_hour:.4f}", p.source, p.updated_by)
    console.print(table)


@vm_prices.command("set")
@friendly_errors
def vm_prices_set(
    host: str = typer.Argument(..., help="the host name the agent and the GPU inventory use"),
    usd_per_hour: str = typer.Argument(..., metavar="USD_PER_HOUR"),
    source: str = typer.Option("", "--source", help="where the number comes from"),
) -> None:
    """Set a VM's price beyond its GPUs (admin): vCPU, memory and disk per hour."""
    price = service.set_vm_price(acting_principal(), host, usd_per_hour, source=source)
    console.print(f"{price.host}: ${price.usd_per_hour}/hour beyond its GPUs", highlight=False)


def _month_window(start: str | None, end: str | None) -> tuple[datetime, datetime]:
    stop = _when(end, "--end") or datetime.now(UTC)
    return _when(start, "--start") or stop.replace(day=1, hour=0, minute=0, second=0, microsecond=0), stop


@app.command("savings")
@friendly_errors
def savings(
    start: str = typer.Option(None, "--start", help="ISO 8601 (default: the start of this month)"),
    end: str = typer.Option(None, "--end", help="default now"),
    horizon: str = typer.Option(None, "--horizon", help="count a stop at most this long, e.g. 24h "
                                                        "(default SAVINGS_HORIZON_HOURS)"),
    as_json: bool = typer.Option(False, "--json", help="print JSON"),
) -> None:
    """What auto-shutdown saved: one row per stop, by VM, and the assumption behind the figure."""
    lo, hi = _month_window(start, end)
    hours = parse_duration(horizon, what="--horizon", bare_seconds=True).total_seconds() / 3600 if horizon else None
    ledger = service.savings_ledger(acting_principal(), lo, hi, horizon_hours=hours)
    if as_json:
        print_json(ledger)
        return
    table = Table("VM", "kind", "GPUs", "$/hour", "stopped", "started", "hours", "saved")
    for r in ledger.rows:
        table.add_row(r.host, r.kind, str(r.gpus), _money(r.usd_per_hour), f"{r.stopped_at:%Y-%m-%d %H:%M}",
                      f"{r.started_at:%Y-%m-%d %H:%M}" if r.started_at else "-", f"{r.hours:,.2f}",
                      _money(r.saved_usd) if r.kind == "stopped" else f"({_money(r.saved_usd)} dry run)")
    console.print(table)
    console.print(f"saved [bold]{_money(ledger.saved_usd)}[/] ({ledger.saved_gpu_hours:,.1f} GPU-hours) "
                  f"{lo:%Y-%m-%d} → {hi:%Y-%m-%d %H:%M}; dry runs would have saved {_money(ledger.would_save_usd)}",
                  highlight=False)
    console.print(f"assumption: {ledger.assumption}", highlight=False)


@app.command("streams")
@friendly_errors
def streams(
    group_by: str = typer.Option("stream", "--group-by", help=", ".join(STREAM_GROUPS)),
    since: str = typer.Option("24h", "--since", help="window length when --start is not given"),
    start: str = typer.Option(None, "--start"),
    end: str = typer.Option(None, "--end", help="default now"),
    as_json: bool = typer.Option(False, "--json", help="print JSON"),
) -> None:
    """Cost per stream (or key, owner, host, label): each stream's share of its VM's GPU-hours."""
    lo, hi = _window(since, start, end)
    result = service.stream_costs_of(acting_principal(), lo, hi, group_by=group_by)
    if as_json:
        print_json(result)
        return
    table = Table(group_by, "sessions", "stream-hours", "GPU-hours", "cost", "$/stream-hour")
    for r in [*result.rows, result.total]:
        table.add_row(r.key, str(r.sessions), f"{r.stream_hours:,.2f}", f"{r.gpu_hours:,.2f}", _money(r.cost_usd),
                      _money(r.usd_per_stream_hour))
    console.print(table)
    if result.unattributed_stream_hours:
        console.print(f"{result.unattributed_stream_hours:,.2f} stream-hours unattributed (no STREAMS_HOST, or a "
                      "host without GPUs): charged nothing", highlight=False)
    console.print(f"rule: {result.rule}", highlight=False)
