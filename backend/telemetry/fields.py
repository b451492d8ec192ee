"""The DCGM field catalog: every metric we store in its own `gpu_metrics` column.

A column is the DCGM field name lower-cased without its `DCGM_FI_DEV_` / `DCGM_FI_PROF_` prefix, so anyone who
knows DCGM reads the schema at once. Metrics not listed here are kept in `gpu_metrics.extra` (jsonb).
`kind` says how readers aggregate: gauges are averaged, counters are monotonic totals (take max / deltas).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class Field:
    column: str
    dcgm: str
    unit: str
    kind: Literal["gauge", "counter", "bitmask", "code"]
    sql_type: Literal["double precision", "bigint"]
    description: str
    minimum: float | None = 0.0
    maximum: float | None = None


def _g(column: str, dcgm: str, unit: str, description: str, maximum: float | None = None,
       minimum: float | None = 0.0) -> Field:
    return Field(column, dcgm, unit, "gauge", "double precision", description, minimum, maximum)


def _c(column: str, dcgm: str, unit: str, description: str) -> Field:
    return Field(column, dcgm, unit, "counter", "bigint", description)


FIELDS: tuple[Field, ...] = (
    _g("gpu_temp", "DCGM_FI_DEV_GPU_TEMP", "°C", "GPU temperature", 200, -50),
    _g("memory_temp", "DCGM_FI_DEV_MEMORY_TEMP", "°C", "HBM memory temperature", 200, -50),
    _g("power_usage", "DCGM_FI_DEV_POWER_USAGE", "W", "power draw", 2000),
    _c("total_energy_consumption", "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", "mJ", "energy since driver load"),
    _g("gpu_util", "DCGM_FI_DEV_GPU_UTIL", "%", "GPU utilization", 100),
    _g("mem_copy_util", "DCGM_FI_DEV_MEM_COPY_UTIL", "%", "memory copy utilization", 100),
    _g("enc_util", "DCGM_FI_DEV_ENC_UTIL", "%", "encoder utilization", 100),
    _g("dec_util", "DCGM_FI_DEV_DEC_UTIL", "%", "decoder utilization", 100),
    _g("fb_used", "DCGM_FI_DEV_FB_USED", "MiB", "frame buffer used", 1_048_576),
    _g("fb_free", "DCGM_FI_DEV_FB_FREE", "MiB", "frame buffer free", 1_048_576),
    _g("sm_clock", "DCGM_FI_DEV_SM_CLOCK", "MHz", "SM clock", 10_000),
    _g("mem_clock", "DCGM_FI_DEV_MEM_CLOCK", "MHz", "memory clock", 20_000),
    _c("pcie_replay_counter", "DCGM_FI_DEV_PCIE_REPLAY_COUNTER", "count", "PCIe replays"),
    Field("xid_errors", "DCGM_FI_DEV_XID_ERRORS", "code", "code", "bigint", "last XID error code (0: none)", 0, 1000),
    _c("ecc_sbe_vol_total", "DCGM_FI_DEV_ECC_SBE_VOL_TOTAL", "count", "single-bit ECC errors, volatile"),
    _c("ecc_dbe_vol_total", "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL", "count", "double-bit ECC errors, volatile"),
    _c("ecc_sbe_agg_total", "DCGM_FI_DEV_ECC_SBE_AGG_TOTAL", "count", "single-bit ECC errors, lifetime"),
    _c("ecc_dbe_agg_total", "DCGM_FI_DEV_ECC_DBE_AGG_TOTAL", "count", "double-bit ECC errors, lifetime"),
    _c("retired_pages_sbe", "DCGM_FI_DEV_RETIRED_SBE", "pages", "pages retired for SBE"),
    _c("retired_pages_dbe", "DCGM_FI_DEV_RETIRED_DBE", "pages", "pages retired for DBE"),
    _c("retired_pages_pending", "DCGM_FI_DEV_RETIRED_PENDING", "pages", "page retirements pending a reset"),
    _c("uncorrectable_remapped_rows", "DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS", "rows",
       "rows remapped, uncorrectable"),
    _c("correctable_remapped_rows", "DCGM_FI_DEV_CORRECTABLE_REMAPPED_ROWS", "rows", "rows remapped, correctable"),
    _c("row_remap_failure", "DCGM_FI_DEV_ROW_REMAP_FAILURE", "flag", "row remapping failed"),
    Field("clocks_event_reasons", "DCGM_FI_DEV_CLOCKS_EVENT_REASONS", "bitmask", "bitmask", "bigint",
          "throttle reasons bitmask (0x8 HW slowdown, 0x20/0x40 thermal, 0x80 power brake)", 0, None),
    _c("power_violation", "DCGM_FI_DEV_POWER_VIOLATION", "µs", "time throttled by power limit"),
    _c("thermal_violation", "DCGM_FI_DEV_THERMAL_VIOLATION", "µs", "time throttled by thermal limit"),
    _c("nvlink_crc_flit_error_count_total", "DCGM_FI_DEV_NVLINK_CRC_FLIT_ERROR_COUNT_TOTAL", "count",
       "NVLink flit CRC errors"),
    _c("nvlink_replay_error_count_total", "DCGM_FI_DEV_NVLINK_REPLAY_ERROR_COUNT_TOTAL", "count",
       "NVLink replay errors"),
    _c("nvlink_recovery_error_count_total", "DCGM_FI_DEV_NVLINK_RECOVERY_ERROR_COUNT_TOTAL", "count",
       "NVLink recovery errors"),
    _c("nvlink_bandwidth_total", "DCGM_FI_DEV_NVLINK_BANDWIDTH_TOTAL", "count", "NVLink bandwidth counter"),
    _g("gr_engine_active", "DCGM_FI_PROF_GR_ENGINE_ACTIVE", "ratio", "graphics engine active", 1),
    _g("sm_active", "DCGM_FI_PROF_SM_ACTIVE", "ratio", "SM active", 1),
    _g("pipe_tensor_active", "DCGM_FI_PROF_PIPE_TENSOR_ACTIVE", "ratio", "tensor pipe active", 1),
    _g("dram_active", "DCGM_FI_PROF_DRAM_ACTIVE", "ratio", "DRAM active", 1),
    _g("pcie_tx_bytes", "DCGM_FI_PROF_PCIE_TX_BYTES", "B/s", "PCIe transmit throughput"),
    _g("pcie_rx_bytes", "DCGM_FI_PROF_PCIE_RX_BYTES", "B/s", "PCIe receive throughput"),
)

BY_COLUMN: dict[str, Field] = {f.column: f for f in FIELDS}
BY_DCGM: dict[str, Field] = {f.dcgm: f for f in FIELDS}
COLUMNS: tuple[str, ...] = tuple(f.column for f in FIELDS)


def column_for(name: str) -> str:
    """The column a DCGM field name (`DCGM_FI_DEV_GPU_TEMP`) or a column name maps to (maybe unknown)."""
    if name in BY_DCGM:
        return BY_DCGM[name].column
    lowered = name.lower()
    for prefix in ("dcgm_fi_dev_", "dcgm_fi_prof_"):
        if lowered.startswith(prefix):
            return lowered[len(prefix):]
    return lowered
