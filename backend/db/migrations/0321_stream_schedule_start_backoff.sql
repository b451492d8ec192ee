-- The VM starter backs off a start that keeps failing: `vm_start_failures` failed tries in a row so far (kept after
-- a success, as the record of what it took), the next try not before `vm_start_retry_at`.
ALTER TABLE stream_schedules
    ADD COLUMN vm_start_failures integer NOT NULL DEFAULT 0 CHECK (vm_start_failures >= 0),
    ADD COLUMN vm_start_retry_at timestamptz;
