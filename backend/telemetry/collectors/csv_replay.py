"""Replay a DCGM long-format CSV (one metric per row) as `gpu.metrics.v1` samples.

Header: `timestamp,metric_name,gpu_id,device,uuid,modelName,Hostname,container,pod,namespace,value,labels_raw`.
Rows with the same (timestamp, uuid) become one sample. Files are expected in time order; rows of the last few
timestamps are still merged when they arrive out of order, so memory stays bounded on files of any size. A bad row
is reported with its line number and skipped: one broken line must not lose the rest of the file.
"""

from __future__ import annotations

import csv
import logging
import math
import re
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from backend.errors import InvalidInput
from backend.telemetry.collectors.dcgm import IDENTITY_LABELS, column, typed
from backend.telemetry.messages import GpuSample, is_metric_name

log = logging.getLogger(__name__)

HEADER = ("timestamp", "metric_name", "gpu_id", "device", "uuid", "modelName", "Hostname", "container", "pod",
          "namespace", "value", "labels_raw")
OPEN_TIMESTAMPS = 8
MAX_WARNINGS = 50
_UUID = re.compile(r"(GPU|MIG)-[0-9A-Za-z-]{4,}")
_LABEL = re.compile(r'([A-Za-z_][A-Za-z0-9_.]*)="((?:[^"\\]|\\.)*)"')


class BadRow(ValueError):
    """Why one row cannot be used."""


def parse_timestamp(text: str) -> datetime:
    """RFC 3339 / ISO 8601 (naive means UTC), or Unix seconds / milliseconds."""
    try:
        number = float(text)
    except ValueError:
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            raise BadRow(f"timestamp {text[:40]!r} is neither ISO 8601 nor Unix time") from None
        return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
    if not math.isfinite(number):
        raise BadRow(f"timestamp {text[:40]!r} is not a finite number")
    return datetime.fromtimestamp(number / 1000 if number > 1e11 else number, UTC)


def parse_labels(raw: str) -> dict[str, str]:
    """`key="value",key2="value2"` (the CSV's doubled quotes are already undone by the csv module)."""
    return {k: v.replace('\\"', '"') for k, v in _LABEL.findall(raw)}


@dataclass
class _Group:
    ts: datetime
    host: str
    index: int
    uuid: str
    model: str
    driver: str | None
    labels: dict[str, str]
    metrics: dict[str, int | float] = field(default_factory=dict)

    def sample(self) -> GpuSample:
        return GpuSample(ts=self.ts, host=self.host, gpu_index=self.index, gpu_uuid=self.uuid,
                         model=self.model or None, driver=self.driver, source="csv", labels=self.labels,
                         metrics=self.metrics)


@dataclass
class ReplayStats:
    rows: int = 0
    bad_rows: int = 0
    samples: int = 0


class CsvReplay:
    """Reads one file; `samples()` yields in file order, `stats` counts rows, bad rows and samples."""

    def __init__(self, path: Path) -> None:
        if not path.is_file():
            raise InvalidInput(f"--file {path}: no such file")
        self.path = path
        self.stats = ReplayStats()
        with path.open(newline="", encoding="utf-8", errors="replace") as f:
            self._check_header(next(csv.reader(f), None))

    def _check_header(self, header: list[str] | None) -> None:
        if header is None or tuple(h.strip() for h in header) != HEADER:
            raise InvalidInput(f"{self.path}: line 1 is not the DCGM CSV header {','.join(HEADER)}")

    def count_rows(self) -> int:
        """Data lines in the file (for the progress bar); cheap even for large files."""
        with self.path.open("rb") as f:
            lines = sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b""))
        return max(0, lines - 1)

    def samples(self, progress: Callable[[int], None] | None = None) -> Iterator[GpuSample]:
        open_groups: OrderedDict[datetime, dict[str, _Group]] = OrderedDict()
        with self.path.open(newline="", encoding="utf-8", errors="replace") as f:
            reader = csv.reader(f)
            self._check_header(next(reader, None))
            for row in reader:
                self.stats.rows += 1
                if progress and self.stats.rows % 1000 == 0:
                    progress(1000)
                try:
                    self._add(row, open_groups)
                except BadRow as exc:
                    self._bad(reader.line_num, str(exc))
                    continue
                while len(open_groups) > OPEN_TIMESTAMPS:
                    yield from self._emit(open_groups.popitem(last=False)[1])
            while open_groups:
                yield from self._emit(open_groups.popitem(last=False)[1])
        if progress:
            progress(self.stats.rows % 1000)
        if self.stats.bad_rows:
            log.warning("%s: %d bad row(s) skipped", self.path, self.stats.bad_rows)

    def _emit(self, groups: dict[str, _Group]) -> Iterator[GpuSample]:
        for group in groups.values():
            self.stats.samples += 1
            yield group.sample()

    def _bad(self, line: int, reason: str) -> None:
        self.stats.bad_rows += 1
        if self.stats.bad_rows <= MAX_WARNINGS:
            log.warning("%s line %d: %s", self.path.name, line, reason)
        elif self.stats.bad_rows == MAX_WARNINGS + 1:
            log.warning("%s: more bad rows; only the count is reported from here on", self.path.name)

    def _add(self, row: list[str], open_groups: OrderedDict[datetime, dict[str, _Group]]) -> None:
        if len(row) != len(HEADER):
            raise BadRow(f"expected {len(HEADER)} fields, found {len(row)}")
        ts_text, name, gpu_id, device, uuid, model, host, container, pod, namespace, value_text, raw = row
        ts = parse_timestamp(ts_text.strip())
        if not _UUID.fullmatch(uuid):
            raise BadRow(f"uuid {uuid[:60]!r} is not a GPU UUID")
        if not host:
            raise BadRow("Hostname is empty")
        metric = column(name.strip())
        if not name.strip() or not is_metric_name(metric):
            raise BadRow(f"metric_name {name[:60]!r} is not a metric name")
        try:
            value = float(value_text)
        except ValueError:
            raise BadRow(f"value {value_text[:40]!r} is not a number") from None
        if not math.isfinite(value):
            raise BadRow(f"value {value_text!r} is not finite")
        by_uuid = open_groups.get(ts)
        if by_uuid is None:
            by_uuid = open_groups[ts] = {}
        group = by_uuid.get(uuid)
        if group is None:
            try:
                index = int(gpu_id)
            except ValueError:
                raise BadRow(f"gpu_id {gpu_id[:20]!r} is not an integer") from None
            if not 0 <= index <= 255:
                raise BadRow(f"gpu_id {index} is out of range 0..255")
            extra = parse_labels(raw)
            labels = {k: v for k, v in (("device", device), ("container", container), ("pod", pod),
                                        ("namespace", namespace)) if v}
            labels |= {k: v for k, v in extra.items() if k not in IDENTITY_LABELS and v}
            group = by_uuid[uuid] = _Group(ts, host, index, uuid, model, extra.get("DCGM_FI_DRIVER_VERSION"), labels)
        group.metrics[metric] = typed(metric, value)
