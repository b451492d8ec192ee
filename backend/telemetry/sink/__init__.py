"""The telemetry sink: Kafka → validate → PostgreSQL/TimescaleDB (COPY, idempotent) → commit offsets.

One `Sink` process per consumer-group member. Modules: `validate` (message contracts, plausibility), `batch`
(messages → rows), `writer` (one `write(batch)` seam to the database), `rollups` (the postgres profile's 1m/1h
rollups, folded in the same statement), `partitions` (daily partitions and retention), `dlq` (dead letters with
reasons), `metrics` (Prometheus) and `consumer` (the loop: batching by size and latency, back-off, SIGTERM).
"""
