-- Bearer API tokens for machines and other teams. A token is `spt_<key_id>_<secret>`: the key id finds the row,
-- only a SHA-256 of the secret is stored, and it is compared in constant time.
CREATE TABLE api_tokens (
    key_id       text PRIMARY KEY CHECK (key_id ~ '^[0-9a-f]{12}$'),
    name         text NOT NULL CHECK (name ~ '^[a-z0-9][a-z0-9._@-]{0,63}$'),
    secret_hash  bytea NOT NULL CHECK (octet_length(secret_hash) = 32),
    role         text NOT NULL CHECK (role IN ('admin', 'operator', 'viewer')),
    created_by   text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz,
    last_used_at timestamptz,
    revoked_at   timestamptz,
    revoked_by   text
);
-- A name is unique among live tokens; a revoked token's name may be reused.
CREATE UNIQUE INDEX api_tokens_live_name ON api_tokens (name) WHERE revoked_at IS NULL;
