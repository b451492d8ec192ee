-- What each sink process reports about itself every SINK_STATUS_INTERVAL_S (both profiles;
-- backend/telemetry/sink/status_report.py): its partitions with committed offset, position, the high watermark its
-- fetches saw and the lag, its write rate and its dead letters by reason. The console and `pipeline status` read
-- lag, rate and the group's members here, so no page asks the broker while it renders. A row not updated for three
-- of its intervals is a sink that is gone (readers ignore it for lag); sinks delete rows older than a day.
CREATE TABLE sink_status (
    instance_id      text PRIMARY KEY,
    group_id         text NOT NULL,
    host             text NOT NULL,
    pid              integer NOT NULL,
    member_id        text,
    started_at       timestamptz NOT NULL,
    reported_at      timestamptz NOT NULL,
    stopped_at       timestamptz,
    interval_s       double precision NOT NULL,
    topic_partitions jsonb NOT NULL DEFAULT '{}'::jsonb,
    partitions       jsonb NOT NULL DEFAULT '[]'::jsonb,
    consumed         bigint NOT NULL DEFAULT 0,
    samples_written  bigint NOT NULL DEFAULT 0,
    tokens_written   bigint NOT NULL DEFAULT 0,
    samples_per_s    double precision NOT NULL DEFAULT 0,
    messages_per_s   double precision NOT NULL DEFAULT 0,
    dead_letters     jsonb NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX sink_status_group ON sink_status (group_id, reported_at DESC);
