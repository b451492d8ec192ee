-- Durable stream history for cost per stream: `live_streams` rows go at publish_done, so every session is
-- copied here by triggers (whatever path changes the registry: callbacks, a republish, ghost reconciliation).
-- `host` is the VM whose nginx-rtmp carries the stream (the callbacks write STREAMS_HOST); NULL: unattributed.
ALTER TABLE live_streams ADD COLUMN host text;

CREATE TABLE stream_sessions (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    app        text NOT NULL,
    stream     text NOT NULL,
    key_id     text REFERENCES stream_keys (id),
    host       text,
    client_id  text NOT NULL,
    started_at timestamptz NOT NULL,
    ended_at   timestamptz CHECK (ended_at IS NULL OR ended_at >= started_at)
);
CREATE INDEX stream_sessions_time ON stream_sessions (started_at, ended_at);
CREATE UNIQUE INDEX stream_sessions_open ON stream_sessions (app, stream) WHERE ended_at IS NULL;

-- Closes the open session of the stream (whatever left it open) before opening the next, so a registry row and
-- its open session stay one to one. Fires only when a session starts or ends, not on every on_update.
CREATE FUNCTION stream_sessions_track() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        UPDATE stream_sessions SET ended_at = greatest(started_at, now())
        WHERE app = OLD.app AND stream = OLD.stream AND ended_at IS NULL;
        RETURN NULL;
    END IF;
    UPDATE stream_sessions SET ended_at = greatest(started_at, now())
    WHERE app = NEW.app AND stream = NEW.stream AND ended_at IS NULL;
    INSERT INTO stream_sessions (app, stream, key_id, host, client_id, started_at)
    VALUES (NEW.app, NEW.stream, NEW.key_id, NEW.host, NEW.client_id, NEW.started_at);
    RETURN NULL;
END $$;

CREATE TRIGGER stream_sessions_track AFTER INSERT OR DELETE OR UPDATE OF started_at ON live_streams
    FOR EACH ROW EXECUTE FUNCTION stream_sessions_track();
