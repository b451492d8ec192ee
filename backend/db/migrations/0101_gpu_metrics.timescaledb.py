"""gpu_metrics, timescaledb profile: a compressed hypertable; token_usage (0100) becomes one too."""

from backend.telemetry.storage_sql import gpu_metrics_table


def sql() -> str:
    return f"""\
-- gpu_metrics, timescaledb profile: a hypertable with one-day chunks (see docs/telemetry.md, "Sink and storage",
-- for the sizing rule), compressed after two days, segmented by gpu_uuid and ordered by time desc.
{gpu_metrics_table()};
SELECT create_hypertable('gpu_metrics', by_range('time', INTERVAL '1 day'));
ALTER TABLE gpu_metrics SET (
    timescaledb.compress,
    timescaledb.compress_segmentby = 'gpu_uuid',
    timescaledb.compress_orderby = 'time DESC'
);
SELECT add_compression_policy('gpu_metrics', INTERVAL '2 days');
SELECT add_retention_policy('gpu_metrics', INTERVAL '14 days');

SELECT create_hypertable('token_usage', by_range('time', INTERVAL '7 days'), migrate_data => true);
SELECT add_retention_policy('token_usage', INTERVAL '730 days');
"""
