-- GPU health (both profiles): the latest status per GPU, alerts with their lifecycle, and risk predictions.
CREATE TABLE gpu_health (
    gpu_uuid     text PRIMARY KEY,
    host         text NOT NULL,
    gpu_index    smallint NOT NULL,
    model        text,
    status       text NOT NULL CHECK (status IN ('healthy', 'warning', 'critical', 'unknown')),
    findings     jsonb NOT NULL DEFAULT '[]'::jsonb,
    last_seen    timestamptz,
    evaluated_at timestamptz NOT NULL,
    status_since timestamptz NOT NULL
);
CREATE INDEX gpu_health_status ON gpu_health (status, host);

CREATE TABLE alerts (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    gpu_uuid        text NOT NULL,
    host            text NOT NULL,
    gpu_index       smallint NOT NULL,
    model           text,
    rule            text NOT NULL,
    severity        text NOT NULL CHECK (severity IN ('warning', 'critical')),
    state           text NOT NULL CHECK (state IN ('open', 'acknowledged', 'resolved')),
    title           text NOT NULL,
    evidence        jsonb NOT NULL DEFAULT '{}'::jsonb,
    action          text NOT NULL DEFAULT '',
    since           timestamptz NOT NULL,
    opened_at       timestamptz NOT NULL,
    last_firing_at  timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL,
    clear_count     integer NOT NULL DEFAULT 0,
    reopen_count    integer NOT NULL DEFAULT 0,
    resolved_at     timestamptz,
    acknowledged_at timestamptz,
    acknowledged_by text,
    ack_note        text
);
-- dedup: at most one alert per (GPU, rule) that is not resolved
CREATE UNIQUE INDEX alerts_active ON alerts (gpu_uuid, rule) WHERE state <> 'resolved';
CREATE INDEX alerts_state_opened ON alerts (state, opened_at DESC);
CREATE INDEX alerts_gpu_rule ON alerts (gpu_uuid, rule, resolved_at DESC);

CREATE TABLE gpu_risk (
    gpu_uuid       text PRIMARY KEY,
    host           text NOT NULL,
    gpu_index      smallint NOT NULL,
    model          text,
    predicted_at   timestamptz NOT NULL,
    horizon_h      integer NOT NULL,
    probability    double precision NOT NULL CHECK (probability BETWEEN 0 AND 1),
    baseline_score double precision NOT NULL,
    model_version  text NOT NULL,
    top_features   jsonb NOT NULL DEFAULT '[]'::jsonb,
    features       jsonb NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX gpu_risk_probability ON gpu_risk (probability DESC);
