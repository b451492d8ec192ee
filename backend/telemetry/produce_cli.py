"""`stream-platform pipeline produce --source simulator|tokens|nvml|dcgm|csv`: collect telemetry and put it on Kafka.

Finite sources (`--count`, `--backfill`, a CSV file) exit 0 once everything is flushed; endless ones stop cleanly
on Ctrl-C or SIGTERM, flushing what was collected. Exit 1 when messages could not be delivered.
"""

from __future__ import annotations

import json
import logging
import signal
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from backend.cli_support import err_console, fail, friendly_errors, progress_bar, to_jsonable, with_options
from backend.config import get_settings
from backend.errors import InvalidInput
from backend.parsing import parse_duration, parse_labels
from backend.telemetry.collectors import LiveCollector
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


@dataclass(frozen=True)
class ProduceOptions:
    """The command line of `pipeline produce`; each source reads the options it understands."""

    source: Annotated[Source, typer.Option("--source", help="where samples come from")]
    hosts: Annotated[int, typer.Option("--hosts", help="simulator: number of hosts")] = 2
    gpus_per_host: Annotated[int, typer.Option("--gpus-per-host", help="simulator: GPUs per host")] = 8
    seed: Annotated[int, typer.Option("--seed", help="simulator: same seed, same fleet and samples")] = 0
    models: Annotated[str, typer.Option(
        "--models", help=f"simulator: host models, cycled ({','.join(MODELS)})")] = "h100,a100,l4"
    host_workload: Annotated[list[str] | None, typer.Option(
        "--host-workload", help="simulator: HOST=WORKLOAD pins a host's GPUs (e.g. gpu-node-03=idle)")] = None
    fault: Annotated[list[str] | None, typer.Option(
        "--fault", help=f"simulator: inject KIND[:HOST/INDEX][@OFFSET], KIND one of {', '.join(KINDS)}")] = None
    count: Annotated[int | None, typer.Option(
        "--count", min=1, help="simulator: samples per GPU, as fast as possible; nvml/dcgm: number of reads")] = None
    interval: Annotated[str, typer.Option("--interval", help="time between samples (30s, 1m, …)")] = "10s"
    backfill: Annotated[str | None, typer.Option(
        "--backfill", help="simulator: history up to now (24h), as fast as possible")] = None
    follow: Annotated[bool, typer.Option("--follow", help="simulator: after --count/--backfill, go on live")] = False
    tokens: Annotated[bool, typer.Option("--tokens/--no-tokens", help="simulator: also produce token.usage.v1")] = False
    token_interval: Annotated[str, typer.Option(
        "--token-interval", help="simulator/tokens: token report period")] = "60s"
    schedule_out: Annotated[Path | None, typer.Option(
        "--schedule-out", help="simulator: write the fault schedule (JSON)")] = None
    url: Annotated[str | None, typer.Option("--url", help="dcgm: the exporter's /metrics URL")] = None
    file: Annotated[Path | None, typer.Option("--file", help="csv: the DCGM long-format CSV to replay")] = None
    speed: Annotated[float, typer.Option(
        "--speed", min=0.0, help="csv: N× real time (0: as fast as possible)")] = 0.0
    stdout: Annotated[bool, typer.Option("--stdout", help="print JSON lines instead of producing to Kafka")] = False


@dataclass
class _Run:
    """One `produce` run as a source sees it: the options, the parsed interval, the stop event, the run's
    clean-ups (`stack`) and what to report once everything is delivered (`after`)."""

    options: ProduceOptions
    every: timedelta
    stop: threading.Event
    stack: ExitStack
    after: list[Callable[[], None]] = field(default_factory=list)

    def poll(self, collector: LiveCollector) -> Iterator[Message]:
        """A live source read every --interval (--count reads, or until stopped), closed when the run ends."""
        self.stack.callback(collector.close)
        return polled(collector.samples, self.every.total_seconds(), self.options.count, self.stop)


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


def _simulated(run: _Run) -> Iterable[Message]:
    """A simulated fleet's history (--count, --backfill) as fast as possible, then, if asked (or without a
    history), live in real time; with its token reports (--tokens), or only those (`--source tokens`)."""
    o, every = run.options, run.every
    now = _align(datetime.now(UTC), every)
    start, end = now, None
    if o.backfill:
        start, end = _align(now - parse_duration(o.backfill, what="--backfill", bare_seconds=True), every), now
    elif o.count:
        start, end = now - (o.count - 1) * every, now + every
    fleet = Fleet(o.hosts, o.gpus_per_host, o.seed, [FaultSpec.parse(f) for f in o.fault or ()], start,
                  [m.strip() for m in o.models.split(",") if m.strip()], host_workloads=parse_labels(
                      o.host_workload or [], what="--host-workload"))
    _announce(fleet, o.schedule_out)
    tick = None
    if end is not None and not o.follow:
        tick = run.stack.enter_context(progress_bar("simulating", -(-(end - start) // every) * len(fleet.gpus)))
    token_every = parse_duration(o.token_interval, what="--token-interval", bare_seconds=True)

    def samples() -> Iterator[GpuSample]:
        if end is not None:
            history = fleet.samples(start, end, every)
            yield from counted(history, tick) if tick else history
        if end is None or o.follow:
            yield from paced(fleet.samples(max(fleet.resume_at, datetime.now(UTC)), None, every), stop=run.stop)

    if o.source is Source.tokens:
        return token_usage_only(fleet, samples(), token_every)
    return with_token_usage(fleet, samples(), token_every) if o.tokens else samples()


def _nvml(run: _Run) -> Iterable[Message]:
    from backend.telemetry.collectors.nvml import NvmlCollector

    collector = NvmlCollector()
    err_console.print(f"NVML: {len(collector.devices)} GPU(s), driver {collector.driver}")
    return run.poll(collector)


def _dcgm(run: _Run) -> Iterable[Message]:
    from backend.telemetry.collectors.dcgm import DcgmScraper

    if not run.options.url:
        raise InvalidInput("--source dcgm needs --url http://HOST:9400/metrics")
    return run.poll(DcgmScraper(run.options.url))


def _replayed(run: _Run) -> Iterable[Message]:
    from backend.telemetry.collectors.csv_replay import CsvReplay

    file, speed = run.options.file, run.options.speed
    if file is None:
        raise InvalidInput("--source csv needs --file PATH")
    replay = CsvReplay(file)
    advance = run.stack.enter_context(progress_bar(f"replaying {file.name}", replay.count_rows()))
    run.after.append(lambda: err_console.print(
        f"{replay.stats.rows} rows → {replay.stats.samples} samples; {replay.stats.bad_rows} bad row(s) skipped",
        style="yellow" if replay.stats.bad_rows else None))
    samples = replay.samples(progress=advance)
    return paced(samples, speed, run.stop) if speed > 0 else samples


SOURCES: dict[Source, Callable[[_Run], Iterable[Message]]] = {
    Source.simulator: _simulated, Source.tokens: _simulated, Source.nvml: _nvml, Source.dcgm: _dcgm,
    Source.csv: _replayed,
}
"""Each source's messages for one run; a new source is a function and a row here (and a `Source` member)."""


@friendly_errors
@with_options(ProduceOptions)
def produce(options: ProduceOptions) -> None:
    """Collect GPU telemetry (or token usage) and produce it to Kafka, keyed by GPU UUID."""
    every = parse_duration(options.interval, what="--interval", bare_seconds=True)
    if options.count and options.backfill:
        raise InvalidInput("give --count or --backfill, not both")
    with ExitStack() as stack:
        run = _Run(options, every, stack.enter_context(_stop_on_signals()), stack)
        messages = SOURCES[options.source](run)
        output: Output = StdoutOutput() if options.stdout else KafkaOutput(get_settings())
        report = pump(messages, output, stop=run.stop)
    for report_more in run.after:
        report_more()
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

