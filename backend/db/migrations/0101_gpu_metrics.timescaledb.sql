-- gpu_metrics, timescaledb profile: a hypertable with one-day chunks (see docs/telemetry.md, "Sink and storage",
-- for the sizing rule), compressed after two days, segmented by gpu_uuid and ordered by time desc.
CREATE TABLE gpu_metrics (
    time                               timestamptz NOT NULL,
    gpu_uuid                           text NOT NULL,
    host                               text NOT NULL,
    gpu_index                          smallint NOT NULL,
    gpu_temp                           double precision,
    memory_temp                        double precision,
    power_usage                        double precision,
    total_energy_consumption           bigint,
    gpu_util                           double precision,
    mem_copy_util                      double precision,
    enc_util                           double precision,
    dec_util                           double precision,
    fb_used                            double precision,
    fb_free                            double precision,
    sm_clock                           double precision,
    mem_clock                          double precision,
    pcie_replay_counter                bigint,
    xid_errors                         bigint,
    ecc_sbe_vol_total                  bigint,
    ecc_dbe_vol_total                  bigint,
    ecc_sbe_agg_total                  bigint,
    ecc_dbe_agg_total                  bigint,
    retired_pages_sbe                  bigint,
    retired_pages_dbe                  bigint,
    retired_pages_pending              bigint,
    uncorrectable_remapped_rows        bigint,
    correctable_remapped_rows          bigint,
    row_remap_failure                  bigint,
    clocks_event_reasons               bigint,
    power_violation                    bigint,
    thermal_violation                  bigint,
    nvlink_crc_flit_error_count_total  bigint,
    nvlink_replay_error_count_total    bigint,
    nvlink_recovery_error_count_total  bigint,
    nvlink_bandwidth_total             bigint,
    gr_engine_active                   double precision,
    sm_active                          double precision,
    pipe_tensor_active                 double precision,
    dram_active                        double precision,
    pcie_tx_bytes                      double precision,
    pcie_rx_bytes                      double precision,
    extra                              jsonb,
    PRIMARY KEY (gpu_uuid, time)
);
SELECT create_hypertable('gpu_metrics', by_range('time', INTERVAL '1 day'));
ALTER TABLE gpu_metrics SET (
    timescaledb.compress,
    timescaledb.compress_segmentby = 'gpu_uuid',
    timescaledb.compress_orderby = 'time DESC'
);
SELECT add_compression_policy('gpu_metrics', INTERVAL '2 days');
SELECT add_retention_policy('gpu_metrics', INTERVAL '14 days');

SELECT create_hypertable('token_usage', by_range('time', INTERVAL '7 days'), migrate_data => true);
SELECT add_retention_policy('token_usage', INTERVAL '730 days');
