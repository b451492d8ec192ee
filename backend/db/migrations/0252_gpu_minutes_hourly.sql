-- GPU-minutes per GPU, host and UTC hour, precomputed for spend (docs/costs.md, "How spend is precomputed";
-- kept current by backend/telemetry/gpu_minutes.py, read by backend/costs/spend.py). A row holds how many
-- 1-minute rollup buckets of the hour had samples and how many of them were idle (average gpu_util below the
-- threshold the hour was computed with). An hour's rows are trusted only while nothing was written into it since:
-- every write lists its hours in gpu_minutes_1h_dirty (insert only, in the writer's transaction), and the refresher
-- removes exactly the marks it saw before it recomputed the hour. Readers take trusted hours from here and every
-- other minute from gpu_metrics_1m, so the answer is always the one the 1-minute rollups give. Which hours are
-- trusted is the view gpu_minutes_1h_trusted (migration 0253: it differs by profile).
CREATE TABLE gpu_minutes_1h (
    hour         timestamptz NOT NULL,
    gpu_uuid     text NOT NULL,
    host         text NOT NULL,
    minutes      integer NOT NULL CHECK (minutes BETWEEN 1 AND 60),
    idle_minutes integer NOT NULL CHECK (idle_minutes BETWEEN 0 AND minutes),
    PRIMARY KEY (hour, gpu_uuid, host)
);

-- The hours whose rows are complete, and the idle threshold (percent) they were computed with.
CREATE TABLE gpu_minutes_1h_done (
    hour           timestamptz PRIMARY KEY,
    idle_threshold double precision NOT NULL,
    computed_at    timestamptz NOT NULL DEFAULT now()
);

-- Hours written to since they were computed: one row per write and hour (never updated, so writers never wait).
CREATE TABLE gpu_minutes_1h_dirty (
    id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    hour      timestamptz NOT NULL,
    logged_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX gpu_minutes_1h_dirty_hour ON gpu_minutes_1h_dirty (hour);
