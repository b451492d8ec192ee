"""Prometheus metrics of one sink process, on their own registry (several sinks may share a test process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server


class SinkMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.consumed = Counter("sink_messages_consumed", "Messages read from Kafka", ["topic"],
                                registry=self.registry)
        self.written = Counter("sink_rows_written", "Rows inserted (replayed duplicates excluded)", ["table"],
                               registry=self.registry)
        self.duplicates = Counter("sink_rows_duplicate", "Rows already stored (replays after a crash or rebalance)",
                                  ["table"], registry=self.registry)
        self.dlq = Counter("sink_dlq_messages", "Messages sent to the dead-letter topic", ["reason"],
                           registry=self.registry)
        self.db_retries = Counter("sink_db_retries", "Batch writes retried after a database error",
                                  registry=self.registry)
        self.dlq_retries = Counter("sink_dlq_retries", "Dead-letter flushes retried: the broker had not acknowledged "
                                   "every letter (offsets wait meanwhile)", registry=self.registry)
        self.batch_seconds = Histogram(
            "sink_batch_seconds", "Time to validate, store and commit one batch", registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
        self.batch_size = Histogram("sink_batch_messages", "Messages per batch", registry=self.registry,
                                    buckets=(1, 10, 100, 500, 1000, 2500, 5000, 10000, 50000))
        self.lag = Gauge("sink_consumer_lag", "Messages behind the high watermark", ["topic", "partition"],
                         registry=self.registry)
        self.rollup_minutes = Counter("sink_rollup_minutes", "1-minute buckets materialized by the rollup worker",
                                      registry=self.registry)
        self.rollup_delay = Histogram(
            "sink_rollup_delay_seconds", "From a minute complete (its end, or a later write to it) to its rollup "
            "materialized; bounded by ROLLUP_MAX_DELAY_S plus one pass", registry=self.registry,
            buckets=(1, 2.5, 5, 7.5, 10, 15, 20, 30, 60, 120, 300))
        self.rollup_pending = Gauge("sink_rollup_pending_minutes", "Minutes in the invalidation log after the last "
                                    "pass (open or just written; readers aggregate them from raw rows)",
                                    registry=self.registry)
        self.rollup_failures = Counter("sink_rollup_failures", "Rollup passes that failed (retried next tick)",
                                       registry=self.registry)

    def serve(self, port: int) -> None:
        """Expose /metrics on `port` (all interfaces, for the scraper)."""
        start_http_server(port, registry=self.registry)
