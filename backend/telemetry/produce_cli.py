"""`stream-platform pipeline produce --source simulator|tokens|nvml|dcgm|csv`: collect telemetry and put it on Kafka.

Finite sources (`--count`, `--backfill`, a CSV file) exit 0 once everything is flushed; endless ones stop cleanly
on Ctrl-C or SIGTERM, flushing what was collected. Exit 1 when messages could not be delivered.
"""

from __future__ import annotations

import json
import logging
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import ExitStack, closing, contextmanager
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path

import typer

from backend.cli_support import err_console, fail, friendly_errors, progress_bar, to_jsonable
from backend.config import get_settings
from backend.errors import InvalidInput
from backend.parsing import parse_duration
from backend.telemetry.collectors.pacing import paced, polled
from backend.telemetry.collectors.tokens import token_usage_only, with_token_usage
from backend.telemetry.faults import KINDS, FaultSpec
from backend.telemetry.messages import GpuSample, Message
from backend.telemetry.producer import KafkaOutput, Output, ProduceReport, StdoutOutput, counted, pump
from backend.telemetry.simulator import MODELS, Fleet

log = logging.getLogger(__name__)


class Source(StrEnum):
    simulator = "simulator"
    tokens = "tokens"
    nvml = "nvml"
    dcgm = "dcgm"
    csv = "csv"


@contextmanager
def _stop_on_signals() -> Iterator[threading.Event]:
    """SIGTERM and Ctrl-C set an event instead of killing us mid-batch, so we can flush and report."""
    stop = threading.Event()
    previous = {s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _align(at: datetime, interval: timedelta) -> datetime:
    step = interval.total_seconds()
    return datetime.fromtimestamp(at.timestamp() // step * step, UTC)


def _simulated(source: Source, fleet: Fleet, start: datetime, end: datetime | None, interval: timedelta,
               follow: bool, tokens: bool, token_every: timedelta, stop: threading.Event,
               tick: Callable[[], None] | None) -> Iterator[Message]:
    """History (start → end) as fast as possible, then, if asked (or without an end), live in real time."""

    def samples() -> Iterator[GpuSample]:
        if end is not None:
            history = fleet.samples(start, end, interval)
            yield from counted(history, tick) if tick else history
        if end is None or follow:
            yield from paced(fleet.samples(max(fleet.resume_at, datetime.now(UTC)), None, interval), stop=stop)

    if source is Source.tokens:
        return token_usage_only(fleet, samples(), token_every)
    return with_token_usage(fleet, samples(), token_every) if tokens else samples()


@friendly_errors
def produce(
    source: Source = typer.Option(..., "--source", help="where samples come from"),
    hosts: int = typer.Option(2, "--hosts", help="simulator: number of hosts"),
    gpus_per_host: int = typer.Option(8, "--gpus-per-host", help="simulator: GPUs per host"),
    seed: int = typer.Option(0, "--seed", help="simulator: same seed, same fleet and samples"),
    models: str = typer.Option("h100,a100,l4", "--models", help=f"simulator: host models, cycled ({','.join(MODELS)})"),
    fault: list[str] = typer.Option(
        [], "--fault", help=f"simulator: inject KIND[:HOST/INDEX][@OFFSET], KIND one of {', '.join(KINDS)}"),
    count: int = typer.Option(None, "--count", min=1,
                              help="simulator: samples per GPU, as fast as possible; nvml/dcgm: number of reads"),
    interval: str = typer.Option("10s", "--interval", help="time between samples (30s, 1m, …)"),
    backfill: str = typer.Option(None, "--backfill", help="simulator: history up to now (24h), as fast as possible"),
    follow: bool = typer.Option(False, "--follow", help="simulator: after --count/--backfill, go on live"),
    tokens: bool = typer.Option(False, "--tokens/--no-tokens", help="simulator: also produce token.usage.v1"),
    token_interval: str = typer.Option("60s", "--token-interval", help="simulator/tokens: token report period"),
    schedule_out: Path = typer.Option(None, "--schedule-out", help="simulator: write the fault schedule (JSON)"),
    url: str = typer.Option(None, "--url", help="dcgm: the exporter's /metrics URL"),
    file: Path = typer.Option(None, "--file", help="csv: the DCGM long-format CSV to replay"),
    speed: float = typer.Option(0.0, "--speed", min=0.0, help="csv: N× real time (0: as fast as possible)"),
    stdout: bool = typer.Option(False, "--stdout", help="print JSON lines instead of producing to Kafka"),
) -> None:
    """Collect GPU telemetry (or token usage) and produce it to Kafka, keyed by GPU UUID."""
    every = parse_duration(interval, what="--interval", bare_seconds=True)
    if count and backfill:
        raise InvalidInput("give --count or --backfill, not both")
    replay = None
    with ExitStack() as stack:
        stop = stack.enter_context(_stop_on_signals())
        if source in (Source.simulator, Source.tokens):
            now = _align(datetime.now(UTC), every)
            start, end = now, None
            if backfill:
                start, end = _align(now - parse_duration(backfill, what="--backfill", bare_seconds=True), every), now
            elif count:
                start, end = now - (count - 1) * every, now + every
            fleet = Fleet(hosts, gpus_per_host, seed, [FaultSpec.parse(f) for f in fault], start,
                          [m.strip() for m in models.split(",") if m.strip()])
            _announce(fleet, schedule_out)
            tick = None
            if end is not None and not follow:
                tick = stack.enter_context(progress_bar("simulating", -(-(end - start) // every) * len(fleet.gpus)))
            token_every = parse_duration(token_interval, what="--token-interval", bare_seconds=True)
            messages = _simulated(source, fleet, start, end, every, follow, tokens, token_every, stop, tick)
        elif source is Source.nvml:
            from backend.telemetry.collectors.nvml import NvmlCollector

            collector = NvmlCollector()
            stack.callback(collector.close)
            err_console.print(f"NVML: {len(collector.devices)} GPU(s), driver {collector.driver}")
            messages = polled(collector.sample, every.total_seconds(), count, stop)
        elif source is Source.dcgm:
            from backend.telemetry.collectors.dcgm import DcgmScraper

            if not url:
                raise InvalidInput("--source dcgm needs --url http://HOST:9400/metrics")
            scraper = stack.enter_context(closing(DcgmScraper(url)))
            messages = polled(scraper.scrape, every.total_seconds(), count, stop)
        else:
            from backend.telemetry.collectors.csv_replay import CsvReplay

            if file is None:
                raise InvalidInput("--source csv needs --file PATH")
            replay = CsvReplay(file)
            advance = stack.enter_context(progress_bar(f"replaying {file.name}", replay.count_rows()))
            samples = replay.samples(progress=advance)
            messages = paced(samples, speed, stop) if speed > 0 else samples
        output: Output = StdoutOutput() if stdout else KafkaOutput(get_settings())
        report = pump(messages, output, stop=stop)
    if replay is not None:
        stats = replay.stats
        err_console.print(f"{stats.rows} rows → {stats.samples} samples; {stats.bad_rows} bad row(s) skipped",
                          style="yellow" if stats.bad_rows else None)
    _finish(report)


def _announce(fleet: Fleet, schedule_out: Path | None) -> None:
    for event in fleet.schedule:
        critical = f", critical at {event.critical_at:%Y-%m-%d %H:%M:%S}Z" if event.critical_at else ""
        err_console.print(f"fault {event.kind} on {event.host}/{event.gpu_index} ({event.gpu_uuid}): "
                          f"onset {event.onset:%Y-%m-%d %H:%M:%S}Z{critical}", highlight=False)
    if schedule_out is not None:
        schedule_out.write_text(json.dumps(to_jsonable(fleet.schedule.as_dicts()), indent=2) + "\n")


def _finish(report: ProduceReport) -> None:
    err_console.print(report.summary(), highlight=False)
    if report.failed:
        fail(f"{report.failed} of {report.sent} messages were not delivered", code=1)

