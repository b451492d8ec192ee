-- Console sign-in throttling (backend/identity/throttle.py). Failures per client address (an IPv4 address or an
-- IPv6 /64) back that address off exponentially; an account locks only when failures against it come from
-- several distinct addresses, so no single address can keep an account locked.
CREATE TABLE login_address_failures (
    addr            inet PRIMARY KEY,
    failures        integer NOT NULL,
    first_failed_at timestamptz NOT NULL,
    last_failed_at  timestamptz NOT NULL,
    locked_until    timestamptz
);

CREATE TABLE login_account_failures (
    name           text NOT NULL REFERENCES users (name) ON DELETE CASCADE ON UPDATE CASCADE,
    addr           inet NOT NULL,
    last_failed_at timestamptz NOT NULL,
    PRIMARY KEY (name, addr)
);
