"""A small catalog of the XID errors the health rules act on: meaning, severity and what an operator should do.

Severities and actions follow NVIDIA's XID catalog and DCGM's health watch (see docs/health.md). A code not listed
here is still reported (as a warning) so nothing the driver says is silently dropped.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Severity = Literal["warning", "critical"]
Category = Literal["memory", "ecc", "nvlink", "bus", "gsp", "pcie", "thermal", "power", "other"]

_RESET = "Drain the GPU's workloads and reset it (nvidia-smi -r or reboot the node)"
_RMA = "; if it recurs after the reset, open an RMA with the vendor"


@dataclass(frozen=True)
class Xid:
    code: int
    name: str
    category: Category
    severity: Severity
    action: str


CATALOG: dict[int, Xid] = {
    x.code: x
    for x in (
        Xid(31, "GPU memory page fault", "memory", "warning",
            "Usually an application bug (illegal address): check the faulting process; if many apps fault, run "
            "DCGM diagnostics (dcgmi diag -r 3)"),
        Xid(32, "Invalid or corrupted push buffer stream", "memory", "warning",
            "Check the driver and PCIe link health; run dcgmi diag -r 3 if it repeats"),
        Xid(38, "Driver firmware error", "pcie", "warning",
            "Update the driver and firmware; reset the GPU if it repeats"),
        Xid(39, "Exception on the PCI bus / GPU inaccessible", "pcie", "warning",
            "Check the PCIe slot, riser and cabling; reseat the GPU if it repeats"),
        Xid(42, "Video processor exception", "pcie", "warning", "Reset the GPU if the encoder/decoder stays broken"),
        Xid(43, "GPU stopped processing (application fault)", "memory", "warning",
            "Usually an application error; check the process that was running"),
        Xid(48, "Double-bit ECC error (DBE)", "ecc", "critical", _RESET + _RMA),
        Xid(54, "Auxiliary power is not connected", "power", "warning",
            "Check the GPU's auxiliary power cables and the PSU"),
        Xid(56, "Display engine error", "power", "warning", "Check power delivery; reset the GPU if it repeats"),
        Xid(57, "Error programming video memory interface", "power", "warning",
            "Check power delivery and memory clocks; reset the GPU if it repeats"),
        Xid(58, "Unstable video memory interface detected", "power", "warning",
            "Check power delivery; run dcgmi diag -r 3"),
        Xid(60, "Video processor exception (thermal)", "thermal", "warning", "Check cooling and airflow"),
        Xid(61, "Internal micro-controller breakpoint/warning", "thermal", "warning",
            "Reset the GPU if the PMU stays unresponsive; update the driver"),
        Xid(62, "Internal micro-controller halt", "thermal", "warning",
            "Check cooling; reset the GPU; update the driver if it repeats"),
        Xid(63, "ECC page retirement or row remapping recorded", "memory", "warning",
            "Reset the GPU at the next maintenance window so the retirement/remap takes effect"),
        Xid(64, "ECC page retirement or row remapping failed", "memory", "critical", _RESET + _RMA),
        Xid(67, "NVLink or HSHUB error", "nvlink", "warning", "Check NVLink/NVSwitch health (nvidia-smi nvlink -e)"),
        Xid(73, "NVLink / NVENC error", "nvlink", "warning", "Check NVLink health; reset the GPU if it repeats"),
        Xid(74, "NVLink error", "nvlink", "critical",
            "Drain and reset the GPUs on this NVLink; check the NVLink/NVSwitch fabric" + _RMA),
        Xid(78, "vGPU start failure / power", "power", "warning", "Check power delivery and vGPU configuration"),
        Xid(79, "GPU has fallen off the bus", "bus", "critical",
            "Drain the node and power-cycle it; check PCIe slot, power and cooling" + _RMA),
        Xid(94, "Contained ECC error", "ecc", "warning",
            "The affected application was stopped; restart it and reset the GPU at the next maintenance window"),
        Xid(95, "Uncontained ECC error", "ecc", "critical", _RESET + _RMA),
        Xid(119, "GSP RPC timeout", "gsp", "critical", _RESET + "; update the driver/firmware if it recurs"),
        Xid(120, "GSP error", "gsp", "critical", _RESET + "; update the driver/firmware if it recurs"),
        Xid(121, "C2C / NVLink link error", "nvlink", "warning", "Check NVLink/C2C link health"),
        Xid(137, "NVLink FLA privilege error", "nvlink", "warning", "Check NVLink fabric configuration"),
        Xid(140, "Unrecovered ECC error", "ecc", "critical", _RESET + _RMA),
    )
}


def lookup(code: int) -> Xid:
    """The catalog entry, or a warning-level placeholder for a code we do not know."""
    return CATALOG.get(code) or Xid(
        code, f"XID {code}", "other", "warning", f"Look up XID {code} in NVIDIA's XID catalog and check the driver log"
    )
