"""Rollups, timescaledb profile: continuous aggregates with their refresh and retention policies."""

from backend.telemetry.storage_sql import continuous_aggregate


def sql() -> str:
    return f"""\
-- no-transaction
-- Rollups, timescaledb profile: continuous aggregates exposing the contract's columns (docs/telemetry.md).
-- Real-time aggregation is on, so the newest bucket is visible before the policy materializes it.
{continuous_aggregate('gpu_metrics_1m', '1 minute')}

SELECT add_continuous_aggregate_policy('gpu_metrics_1m', start_offset => INTERVAL '2 hours',
    end_offset => INTERVAL '1 minute', schedule_interval => INTERVAL '1 minute');

SELECT add_retention_policy('gpu_metrics_1m', INTERVAL '90 days');

{continuous_aggregate('gpu_metrics_1h', '1 hour')}

SELECT add_continuous_aggregate_policy('gpu_metrics_1h', start_offset => INTERVAL '3 days',
    end_offset => INTERVAL '1 hour', schedule_interval => INTERVAL '30 minutes');

SELECT add_retention_policy('gpu_metrics_1h', INTERVAL '730 days');
"""
