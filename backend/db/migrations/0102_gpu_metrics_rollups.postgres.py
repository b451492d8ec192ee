"""Rollups, postgres profile: state tables kept by the sink behind views with the contract's columns."""

from backend.telemetry.storage_sql import sink_rollup


def sql() -> str:
    return f"""\
-- Rollups, postgres profile: the sink upserts sums, counts, minima and maxima of the rows it actually inserted
-- (same transaction as the raw rows, so a replay never double counts); the views expose the contract's columns.
{sink_rollup('gpu_metrics_1m')}
{sink_rollup('gpu_metrics_1h')}"""
