-- The Parquet archive of raw telemetry (both profiles; backend/telemetry/archive.py, docs/telemetry.md "Archive").
-- One row per UTC day: the latest archive attempt and, when verified, what the files hold. Retention drops a day's
-- raw rows only while they still match a verified row here (same count, same first and last sample).
CREATE TABLE archives (
    day         date PRIMARY KEY,
    status      text NOT NULL CHECK (status IN ('verified', 'failed')),
    target      text NOT NULL,
    rows        bigint NOT NULL DEFAULT 0,
    min_time    timestamptz,
    max_time    timestamptz,
    checksum    text,
    bytes       bigint NOT NULL DEFAULT 0,
    raw_bytes   bigint NOT NULL DEFAULT 0,
    files       jsonb NOT NULL DEFAULT '[]'::jsonb,
    error       text,
    duration_s  double precision NOT NULL DEFAULT 0,
    archived_at timestamptz NOT NULL DEFAULT now(),
    actor       text NOT NULL
);

-- `pipeline archive restore --day D` loads a day back here (never into gpu_metrics: retention would drop it again,
-- and the rollups would count it twice). Same columns as gpu_metrics at the time of this migration.
CREATE TABLE gpu_metrics_restored (LIKE gpu_metrics INCLUDING DEFAULTS, PRIMARY KEY (gpu_uuid, time));
CREATE INDEX gpu_metrics_restored_time ON gpu_metrics_restored (time DESC);
