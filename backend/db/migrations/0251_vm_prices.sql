-- The hourly price of a VM beyond its GPUs (vCPU, memory, disk), by host: the savings ledger adds it to the GPU
-- price of a stopped VM "when the catalog has one". Edited with `stream-platform costs vm-prices set` (admin).
CREATE TABLE vm_prices (
    host         text PRIMARY KEY CHECK (length(host) BETWEEN 1 AND 253),
    usd_per_hour numeric(12, 6) NOT NULL CHECK (usd_per_hour >= 0),
    source       text NOT NULL DEFAULT '',
    updated_by   text NOT NULL,
    updated_at   timestamptz NOT NULL DEFAULT now()
);
