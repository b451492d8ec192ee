-- Every change of an alert (opened, reopened, escalated, acknowledged, resolved) with a snapshot of the alert:
-- the alert's timeline for the console, and the webhook's outbox (undelivered rows are retried next round).
CREATE TABLE alert_events (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    alert_id     bigint NOT NULL REFERENCES alerts (id) ON DELETE CASCADE,
    kind         text NOT NULL CHECK (kind IN ('opened', 'reopened', 'escalated', 'acknowledged', 'resolved')),
    at           timestamptz NOT NULL,
    actor        text NOT NULL,
    alert        jsonb NOT NULL,
    attempts     integer NOT NULL DEFAULT 0,
    delivered_at timestamptz
);
CREATE INDEX alert_events_alert ON alert_events (alert_id, id);
CREATE INDEX alert_events_undelivered ON alert_events (id) WHERE delivered_at IS NULL;
