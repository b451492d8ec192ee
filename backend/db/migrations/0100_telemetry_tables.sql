-- Telemetry inventory and token usage (both profiles). gpu_metrics and its rollups follow in 0101/0102.
CREATE TABLE gpus (
    gpu_uuid   text PRIMARY KEY,
    host       text NOT NULL,
    gpu_index  smallint NOT NULL,
    model      text,
    driver     text,
    labels     jsonb NOT NULL DEFAULT '{}'::jsonb,
    first_seen timestamptz NOT NULL,
    last_seen  timestamptz NOT NULL
);
CREATE INDEX gpus_host ON gpus (host, gpu_index);

CREATE TABLE token_usage (
    time              timestamptz NOT NULL,
    host              text NOT NULL,
    gpu_uuid          text NOT NULL,
    served_model      text NOT NULL,
    interval_s        double precision NOT NULL,
    requests          bigint NOT NULL,
    prompt_tokens     bigint NOT NULL,
    completion_tokens bigint NOT NULL,
    latency_ms_p50    double precision,
    latency_ms_p95    double precision,
    labels            jsonb NOT NULL DEFAULT '{}'::jsonb,
    UNIQUE (gpu_uuid, served_model, time)
);
CREATE INDEX token_usage_time ON token_usage (time DESC);
