-- Policy replay (backend/vm/replay.py) reads every evaluation of a VM over up to 92 days. What it needs of a row
-- (did a signal block a stop; was a stream live or a GPU busy) is computed once when the row is written, with the
-- tests the replay used to run on `signals` for every row it read, and one index serves the replay's scan in time
-- order from the index alone as well as the newest-first reads the index it replaces served.
ALTER TABLE vm_evaluations
    ADD COLUMN blocks boolean NOT NULL GENERATED ALWAYS AS (
        signals @> '[{"state": "active"}]' OR signals @> '[{"state": "unknown"}]') STORED,
    ADD COLUMN busy boolean NOT NULL GENERATED ALWAYS AS (
        signals @> '[{"signal": "rtmp", "state": "active"}]' OR signals @> '[{"signal": "gpu", "state": "active"}]'
    ) STORED;
CREATE INDEX vm_evaluations_host_at_id ON vm_evaluations (host, at DESC, id DESC) INCLUDE (blocks, busy);
DROP INDEX vm_evaluations_host_at;
