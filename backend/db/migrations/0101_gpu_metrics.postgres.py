"""gpu_metrics, postgres profile: natively partitioned by day (partitions are made by the sink and maintenance)."""

from backend.telemetry.storage_sql import gpu_metrics_table


def sql() -> str:
    return f"""\
-- gpu_metrics, postgres profile: one row per (gpu_uuid, time), natively partitioned by day on time.
-- Partitions (gpu_metrics_pYYYYMMDD) are created ahead by the sink and `stream-platform pipeline maintain`,
-- and dropped by retention (RETENTION_RAW_DAYS); see backend/telemetry/sink/partitions.py.
{gpu_metrics_table()} PARTITION BY RANGE (time);
CREATE INDEX gpu_metrics_time ON gpu_metrics (time DESC);
"""
