-- Scheduled streams: a key bound to windows. A key with any schedule that is not cancelled is valid only inside
-- one of them ± its grace (on_publish/on_update say "outside schedule"); the VM is started `lead` before the start
-- (`vm_started_at`/`vm_start_error` record what the starter did) and auto-shutdown holds it during the window.
CREATE TABLE stream_schedules (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name           text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    key_id         text NOT NULL REFERENCES stream_keys (id),
    vm             text NOT NULL CHECK (length(vm) BETWEEN 1 AND 128),
    zone           text,
    starts_at      timestamptz NOT NULL,
    ends_at        timestamptz NOT NULL CHECK (ends_at > starts_at),
    grace          interval NOT NULL DEFAULT '0' CHECK (grace >= '0'),
    created_by     text NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    cancelled_at   timestamptz,
    vm_started_at  timestamptz,
    vm_start_error text
);
CREATE INDEX stream_schedules_key ON stream_schedules (key_id) WHERE cancelled_at IS NULL;
CREATE INDEX stream_schedules_vm ON stream_schedules (vm, ends_at) WHERE cancelled_at IS NULL;
