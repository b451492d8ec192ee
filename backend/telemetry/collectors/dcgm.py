"""Scrape a dcgm-exporter `/metrics` endpoint and turn it into one `gpu.metrics.v1` sample per GPU.

The Prometheus text is parsed by `prometheus_client`'s parser (HELP/TYPE, escaping, counters' `_total`). Series are
grouped by their `UUID` label; `Hostname`, `gpu`, `modelName` and `DCGM_FI_DRIVER_VERSION` become the sample's
identity, the remaining labels (pci_bus_id, device, Kubernetes pod/namespace/container, …) its labels. Every
series is kept: known DCGM fields under their column name, the others under their lower-cased name (the sink
stores those in `extra`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime

import httpx
from prometheus_client.parser import text_string_to_metric_families

from backend.errors import InvalidInput, Unavailable
from backend.telemetry.fields import BY_COLUMN, column_for
from backend.telemetry.messages import GpuSample, finite, metric_name

log = logging.getLogger(__name__)

# Labels that identify the GPU rather than describe it.
IDENTITY_LABELS = frozenset({"UUID", "gpu", "Hostname", "modelName", "DCGM_FI_DRIVER_VERSION"})
# Older dcgm-exporter releases use the pre-rename field name of the throttle bitmask.
ALIASES = {"DCGM_FI_DEV_CLOCK_THROTTLE_REASONS": "clocks_event_reasons"}


@dataclass
class _Gpu:
    host: str
    index: int
    model: str | None
    driver: str | None
    labels: dict[str, str]
    metrics: dict[str, int | float] = field(default_factory=dict)


def column(name: str) -> str:
    """The `metrics` key for a DCGM series name."""
    return ALIASES.get(name) or metric_name(column_for(name))


def typed(column_name: str, value: float) -> int | float:
    """Counters, codes and bitmasks are integers in DCGM and bigint in the table."""
    known = BY_COLUMN.get(column_name)
    if known is not None and known.sql_type == "bigint" and value.is_integer():
        return int(value)
    return value


def _series_name(family: str, kind: str, sample: str) -> str:
    """The name as the exporter wrote it: the parser appends `_total` to counters' samples (DCGM's do not have it)."""
    if kind == "counter" and family.startswith("DCGM_") and sample == f"{family}_total":
        return family
    return sample


def parse(text: str, at: datetime | None = None, default_host: str = "unknown") -> list[GpuSample]:
    """The samples in one exporter response. Series without a UUID label (exporter self-metrics) are skipped."""
    at = at or datetime.now(UTC)
    gpus: dict[str, _Gpu] = {}
    try:
        families = list(text_string_to_metric_families(text))
    except ValueError as exc:
        raise InvalidInput(f"not Prometheus text format: {exc}") from None
    for family in families:
        for series in family.samples:
            uuid = series.labels.get("UUID")
            if not uuid:
                continue
            gpu = gpus.get(uuid)
            if gpu is None:
                labels = series.labels
                try:
                    index = int(labels.get("gpu", "0"))
                except ValueError:
                    index = 0
                gpu = gpus[uuid] = _Gpu(
                    host=labels.get("Hostname") or default_host, index=index, model=labels.get("modelName"),
                    driver=labels.get("DCGM_FI_DRIVER_VERSION"),
                    labels={k: v for k, v in labels.items() if k not in IDENTITY_LABELS and v},
                )
            name = column(_series_name(family.name, family.type, series.name))
            gpu.metrics.setdefault(name, typed(name, float(series.value)))
    samples = []
    for uuid, g in gpus.items():
        metrics = finite(g.metrics)
        if metrics:
            samples.append(GpuSample(ts=at, host=g.host, gpu_index=g.index, gpu_uuid=uuid, model=g.model,
                                     driver=g.driver, source="dcgm", labels=g.labels, metrics=metrics))
    return samples


class DcgmScraper:
    """One HTTP client for repeated scrapes of the same exporter."""

    def __init__(self, url: str, timeout: float = 10.0) -> None:
        if not url.startswith(("http://", "https://")):
            raise InvalidInput(f"--url {url!r} must be an http:// or https:// URL of dcgm-exporter's /metrics")
        self.url = url
        self._client = httpx.Client(timeout=timeout)

    def samples(self) -> list[GpuSample]:
        """One scrape: a sample per GPU the exporter reports."""
        try:
            response = self._client.get(self.url)
            response.raise_for_status()
        except httpx.HTTPError as exc:
            raise Unavailable(f"cannot scrape {self.url}: {exc}") from None
        return parse(response.text, default_host=httpx.URL(self.url).host)

    def close(self) -> None:
        self._client.close()
