-- RTMP stream keys, the per-address failure counter, the attempts log and the live-stream registry.
CREATE TABLE stream_keys (
    id            text PRIMARY KEY,
    stream        text NOT NULL CHECK (stream ~ '^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$'),
    app           text NOT NULL CHECK (app ~ '^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$'),
    key_hash      bytea NOT NULL UNIQUE,           -- HMAC-SHA256(pepper, key); the key itself is never stored
    key_prefix    text NOT NULL,                   -- the first characters, to recognise a key
    allowed_cidrs cidr[] NOT NULL DEFAULT '{}',    -- empty: any address
    owner         text,
    labels        jsonb NOT NULL DEFAULT '{}'::jsonb,
    expires_at    timestamptz,
    revoked_at    timestamptz,
    revoked_by    text,
    replaced_by   text REFERENCES stream_keys (id),
    created_at    timestamptz NOT NULL DEFAULT now(),
    created_by    text NOT NULL,
    last_used_at  timestamptz
);
CREATE INDEX stream_keys_stream ON stream_keys (app, stream);

-- One row per client address that failed recently; drives exponential backoff and lockout.
CREATE TABLE stream_auth_failures (
    addr            inet PRIMARY KEY,
    failures        integer NOT NULL,
    first_failed_at timestamptz NOT NULL,
    last_failed_at  timestamptz NOT NULL,
    locked_until    timestamptz
);

-- Every callback decision (high volume: append only, narrow rows, BRIN on time).
CREATE TABLE stream_auth_attempts (
    id      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at      timestamptz NOT NULL DEFAULT now(),
    call    text NOT NULL,
    addr    text NOT NULL,
    app     text NOT NULL,
    stream  text NOT NULL,
    key_id  text,
    outcome text NOT NULL CHECK (outcome IN ('allow', 'deny', 'error')),
    reason  text NOT NULL
);
CREATE INDEX stream_auth_attempts_at ON stream_auth_attempts USING brin (at);
CREATE INDEX stream_auth_attempts_key ON stream_auth_attempts (key_id, id DESC) WHERE key_id IS NOT NULL;
CREATE INDEX stream_auth_attempts_addr ON stream_auth_attempts (addr, id DESC);

-- Streams being published now, by public name; fed by callbacks and reconciled with nginx's /stat.
CREATE TABLE live_streams (
    app            text NOT NULL,
    stream         text NOT NULL,
    key_id         text REFERENCES stream_keys (id),
    addr           text NOT NULL,
    client_id      text NOT NULL,
    started_at     timestamptz NOT NULL DEFAULT now(),
    last_update_at timestamptz NOT NULL DEFAULT now(),
    stats          jsonb NOT NULL DEFAULT '{}'::jsonb,
    stats_at       timestamptz,
    PRIMARY KEY (app, stream)
);
