-- Identity and the shared audit log: every later area records who did what here.
CREATE TABLE users (
    name          text PRIMARY KEY CHECK (name ~ '^[a-z0-9][a-z0-9._@-]{0,63}$'),
    password_hash text NOT NULL,
    role          text NOT NULL CHECK (role IN ('admin', 'operator', 'viewer')),
    disabled      boolean NOT NULL DEFAULT false,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    failed_logins integer NOT NULL DEFAULT 0,
    locked_until  timestamptz,
    last_login_at timestamptz
);

CREATE TABLE audit_log (
    id       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at       timestamptz NOT NULL DEFAULT now(),
    actor    text NOT NULL,
    area     text NOT NULL,
    action   text NOT NULL,
    target   text,
    outcome  text NOT NULL CHECK (outcome IN ('ok', 'denied', 'error')),
    detail   jsonb NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX audit_log_area_at ON audit_log (area, at DESC);
CREATE INDEX audit_log_actor_at ON audit_log (actor, at DESC);
