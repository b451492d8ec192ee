"""`stream-platform pipeline archive [--day D] | restore --day D | list`."""

from __future__ import annotations

from datetime import date
from typing import TYPE_CHECKING, Any

import typer

from backend.cli_support import acting_principal, console, fail, friendly_errors, print_json, progress_bar
from backend.config import get_settings

if TYPE_CHECKING:
    from backend.telemetry.archive import ArchivedDay

app = typer.Typer()


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        fail(f"--day {text!r} is not a date: use YYYY-MM-DD")


@app.callback(invoke_without_command=True)
@friendly_errors
def archive(
    ctx: typer.Context,
    day: str = typer.Option(None, "--day", help="archive this UTC day (YYYY-MM-DD) only, whatever its age"),
    as_json: bool = typer.Option(False, "--json", help="print JSON"),
) -> None:
    """Export every day older than RETENTION_RAW_DAYS to Parquet at ARCHIVE_URL and verify it; run it before
    `pipeline maintain` (docs/telemetry.md, 'Archive'). Exit 1 when a day failed: its raw rows stay in the database."""
    if ctx.invoked_subcommand is not None:
        return
    from backend.telemetry import archive as service

    principal, settings = acting_principal(), get_settings()
    due = service.pending_days(principal, settings, day=_day(day) if day else None)
    if not due:
        console.print("nothing to archive: every day older than the raw retention has a verified archive")
        return
    with progress_bar(f"archiving {len(due)} day(s)", total=sum(d.rows for d in due)) as advance:
        results = service.archive_days(principal, due, settings, advance)
    if as_json:
        print_json([_summary(r) for r in results])
    else:
        for r in results:
            if r.verified:
                console.print(f"{r.day}: verified, {r.rows:,} samples in {len(r.files)} file(s), {r.bytes:,} bytes "
                              f"({r.compression_ratio:.1f}x smaller than the raw rows) in {r.duration_s:.1f} s")
            else:
                console.print(f"{r.day}: [bold red]failed[/], raw rows kept: {r.error}", highlight=False)
    if any(not r.verified for r in results):
        raise typer.Exit(1)


def _summary(record: ArchivedDay) -> dict[str, Any]:
    return {"day": record.day, "status": record.status, "target": record.target, "rows": record.rows,
            "bytes": record.bytes, "raw_bytes": record.raw_bytes, "compression_ratio": record.compression_ratio,
            "checksum": record.checksum, "files": len(record.files), "error": record.error,
            "duration_s": record.duration_s}


@app.command("restore")
@friendly_errors
def restore(day: str = typer.Option(..., "--day", help="the archived UTC day (YYYY-MM-DD)")) -> None:
    """Load an archived day into the table gpu_metrics_restored (replacing that day there: safe to repeat)."""
    from backend.telemetry import archive as service

    principal, settings, wanted = acting_principal(), get_settings(), _day(day)
    record = service.archived_day(principal, wanted, settings)
    with progress_bar(f"restoring {wanted}", total=record.rows) as advance:
        report = service.restore_day(principal, wanted, settings, advance)
    console.print(f"{report.day}: {report.rows:,} samples from {report.files} file(s) in {report.table} "
                  f"({report.rows_per_s:,.0f} samples/s)")


@app.command("list")
@friendly_errors
def list_cmd(as_json: bool = typer.Option(False, "--json", help="print JSON")) -> None:
    """Archived days, newest first, with their sizes and compression ratio."""
    from backend.telemetry import archive as service

    records = service.list_archives(acting_principal(), get_settings())
    if as_json:
        print_json([_summary(r) for r in records])
        return
    if not records:
        console.print("no day archived yet")
    for r in records:
        ratio = f"{r.compression_ratio:.1f}x" if r.compression_ratio else "–"
        when = r.archived_at.strftime("%Y-%m-%d %H:%M")
        console.print(f"{r.day}  {r.status:<8} {r.rows:>12,} samples {r.bytes:>14,} bytes  {ratio:>6}  {when}"
                      + (f"  {r.error}" if r.error else ""), highlight=False)
