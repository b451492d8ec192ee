-- Auto-shutdown agent: per-host countdown state, every evaluation (the "why (not) idle" view) and events
-- (warnings, stops, boots) from which cost savings read stopped intervals.
CREATE TABLE vm_agent_state (
    host       text PRIMARY KEY,
    state      jsonb NOT NULL DEFAULT '{}'::jsonb,
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE vm_evaluations (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    host       text NOT NULL,
    at         timestamptz NOT NULL,
    decision   text NOT NULL CHECK (decision IN ('active', 'idle', 'held', 'warning', 'stop')),
    reasons    jsonb NOT NULL DEFAULT '[]'::jsonb,
    signals    jsonb NOT NULL DEFAULT '[]'::jsonb,
    idle_since timestamptz,
    stop_at    timestamptz
);
CREATE INDEX vm_evaluations_host_at ON vm_evaluations (host, at DESC);

CREATE TABLE vm_events (
    id     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    host   text NOT NULL,
    at     timestamptz NOT NULL,
    kind   text NOT NULL,
    detail jsonb NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX vm_events_host_at ON vm_events (host, at);
CREATE INDEX vm_events_kind_at ON vm_events (kind, at);
