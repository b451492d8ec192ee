"""`stream-platform pipeline sink | rollup | maintain | status`."""

from __future__ import annotations

import typer

from backend.cli_support import acting_principal, console, friendly_errors, print_json
from backend.config import get_settings


@friendly_errors
def sink(
    until_idle: float = typer.Option(None, "--until-idle", min=0.1,
                                     help="exit 0 after this many seconds without a new message"),
    insert_mode: bool = typer.Option(False, "--insert", help="fill the stage with INSERT instead of COPY "
                                     "(servers without COPY)"),
) -> None:
    """Consume telemetry and token usage from Kafka and store them (SIGTERM: finish the batch, commit, exit)."""
    from backend.telemetry.sink.consumer import Sink

    summary = Sink(get_settings(), until_idle=until_idle, use_copy=not insert_mode).run()
    console.print(f"consumed {summary.consumed}, stored {summary.metrics_written} samples and "
                  f"{summary.tokens_written} token-usage rows, {summary.duplicates} already stored, "
                  f"{summary.dead_lettered} dead-lettered{_reasons(summary.dlq_reasons)} "
                  f"({summary.messages_per_s:,.0f} messages/s while busy)")


def _reasons(counts: dict[str, int]) -> str:
    return f" ({', '.join(f'{reason}: {n}' for reason, n in sorted(counts.items()))})" if counts else ""


@friendly_errors
def rollup(as_json: bool = typer.Option(False, "--json", help="print JSON")) -> None:
    """Materialize the pending 1m/1h rollups now (postgres profile). The sink does this on its own every
    ROLLUP_MAX_DELAY_S / 2; run it after loading data without a sink, or to catch up at once."""
    from backend.telemetry.sink.rollup_worker import materialize

    report = materialize(get_settings())
    if as_json:
        print_json(report)
        return
    if report.skipped:
        console.print("another rollup worker is running a pass (a sink): nothing done")
        return
    console.print(f"materialized {report.minutes} minutes and {report.hours} hours; "
                  f"{report.pending} minutes still pending (open, or written meanwhile)")


@friendly_errors
def maintain(as_json: bool = typer.Option(False, "--json", help="print JSON")) -> None:
    """Create the next days' partitions, vacuum the days just finished and apply RETENTION_*_DAYS (run daily)."""
    from backend.telemetry.sink.partitions import maintain as run_maintenance

    report = run_maintenance(get_settings())
    if as_json:
        print_json(report)
        return
    console.print(f"profile {report.profile}: {len(report.partitions_created)} partitions created, "
                  f"{len(report.partitions_dropped)} dropped, {len(report.partitions_vacuumed)} finished days vacuumed")
    for day, why in report.partitions_kept.items():
        console.print(f"  kept {day}: {why}")
    for table, rows in report.rows_deleted.items():
        console.print(f"  {table}: {rows} expired rows deleted")
    for relation, days in report.policies.items():
        console.print(f"  {relation}: retention policy {days} days")


@friendly_errors
def status(
    as_json: bool = typer.Option(False, "--json", help="print JSON"),
    minutes: int = typer.Option(5, "--minutes", min=1, max=1440, help="window for the ingest rate"),
    ask_broker: bool = typer.Option(False, "--live", help="also ask the broker now: lag per partition, group "
                                    "members and the newest dead letters (a probe consumer; takes a moment)"),
) -> None:
    """Ingest rate, and consumer lag, sink instances and dead letters as the sinks last recorded them."""
    from backend.telemetry import pipeline_status

    who = acting_principal()
    report = pipeline_status.overview(who, minutes=minutes)
    if ask_broker:
        report.live = pipeline_status.live(who, dlq_limit=10)
    if as_json:
        print_json(report)
        return
    rate, sinks = report.ingest, report.sinks
    console.print(f"ingest: {rate.rows} samples in the last {minutes} min ({rate.rows_per_s:.1f}/s)")
    lag = f"{sinks.lag_total}" if sinks.lag_total is not None else f"unknown — {sinks.unknown_because}"
    console.print(f"consumer group {report.group} (as the sinks recorded it): total lag {lag}")
    _print_lag(sinks.lag)
    for i in sinks.instances:
        console.print(f"  sink {i.instance_id} on {i.host} ({i.state}, reported {i.age_s:.0f} s ago): "
                      f"{len(i.partitions)} partitions, {i.samples_per_s:,.0f} samples/s{_reasons(i.dead_letters)}")
    console.print(f"dead letters since the running sinks started: {sum(sinks.dead_letters.values())}"
                  f"{_reasons(sinks.dead_letters)}")
    if report.live is not None:
        console.print(f"broker, asked now: total lag {report.live.lag_total}")
        _print_lag(report.live.lag)
        for m in report.live.members:
            console.print(f"  member {m.client_id} on {m.host}: {', '.join(m.partitions) or 'no partitions'}")
        console.print(f"dead letters: {report.live.dlq_total} in {report.dlq_topic}")
        for d in report.live.dead_letters:
            console.print(f"  {d.source_topic}[{d.source_partition}]@{d.source_offset} {d.reason}: {d.detail}")


def _print_lag(partitions: list) -> None:
    for p in partitions:
        console.print(f"  {p.topic}[{p.partition}] committed {p.committed} end {p.end} lag {p.lag}")


if __name__ == "__main__":
    # `python -m backend.telemetry.sink_cli [--until-idle N]`: the sink alone, without importing every area's CLI
    # (a sink container or a test starts seconds faster).
    import logging

    from backend import settings_loader

    settings_loader.install()
    logging.basicConfig(level=get_settings().log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    typer.run(sink)
