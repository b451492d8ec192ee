-- The GPU price catalog: $/GPU-hour per GPU model (as NVML/DCGM report `modelName`) and pricing kind, with
-- effective periods [effective_from, effective_to). The service keeps periods of one (model, kind) from
-- overlapping by closing the open period when a new price starts. Seeds: see docs/costs.md (editable with
-- `stream-platform costs prices set`).
CREATE TABLE gpu_prices (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    gpu_model        text NOT NULL CHECK (length(gpu_model) BETWEEN 1 AND 128),
    pricing_kind     text NOT NULL CHECK (pricing_kind IN ('on_demand', 'spot', 'committed')),
    usd_per_gpu_hour numeric(12, 6) NOT NULL CHECK (usd_per_gpu_hour >= 0),
    effective_from   timestamptz NOT NULL,
    effective_to     timestamptz CHECK (effective_to IS NULL OR effective_to > effective_from),
    source           text NOT NULL DEFAULT '',
    updated_by       text NOT NULL,
    updated_at       timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX gpu_prices_open ON gpu_prices (lower(gpu_model), pricing_kind) WHERE effective_to IS NULL;
CREATE INDEX gpu_prices_lookup ON gpu_prices (lower(gpu_model), pricing_kind, effective_from);

INSERT INTO gpu_prices (gpu_model, pricing_kind, usd_per_gpu_hour, effective_from, source, updated_by) VALUES
    ('NVIDIA H100 80GB HBM3', 'on_demand', 11.06, '2024-01-01T00:00:00Z',
     'GCP us-central1 on-demand a3-highgpu-8g ($88.49/h incl. vCPU+RAM) / 8 GPUs; list price as recalled '
     '2026-11-25 without network access: verify on cloud.google.com/compute/gpus-pricing', 'seed'),
    ('NVIDIA A100-SXM4-80GB', 'on_demand', 5.07, '2024-01-01T00:00:00Z',
     'GCP us-central1 on-demand a2-ultragpu-1g ($5.0688/h incl. vCPU+RAM), 1 GPU; list price as recalled '
     '2026-11-25 without network access: verify on cloud.google.com/compute/gpus-pricing', 'seed'),
    ('NVIDIA L4', 'on_demand', 0.71, '2024-01-01T00:00:00Z',
     'GCP us-central1 on-demand g2-standard-4 ($0.7068/h incl. vCPU+RAM), 1 GPU; list price as recalled '
     '2026-11-25 without network access: verify on cloud.google.com/compute/gpus-pricing', 'seed');
