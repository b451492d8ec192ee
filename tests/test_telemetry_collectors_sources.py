"""Real sources: a dcgm-exporter served over HTTP, a DCGM CSV with bad rows, NVML without a driver; and every
message any collector emits validates against the JSON Schemas in backend/telemetry/schemas."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator
from typer.testing import CliRunner

from backend.cli import app
from backend.embedded.ports import free_port
from backend.errors import InvalidInput, Unavailable
from backend.telemetry.collectors.csv_replay import CsvReplay
from backend.telemetry.collectors.dcgm import DcgmScraper, parse
from backend.telemetry.collectors.tokens import token_usage_only
from backend.telemetry.faults import KINDS, FaultSpec
from backend.telemetry.messages import GpuSample, Message, decode, encode
from backend.telemetry.simulator import Fleet

DATA = Path(__file__).parent / "data"
EXPORTER_TEXT = (DATA / "dcgm_exporter_metrics.txt").read_text()
L4_0 = "GPU-1f2e3d4c-5b6a-4789-8a9b-0c1d2e3f4a5b"
L4_1 = "GPU-9a8b7c6d-5e4f-4321-8765-43210fedcba9"
# `pipeline produce` in a process of its own, without loading every other area's CLI (seconds of imports)
PRODUCE = [sys.executable, "-c", "from backend.telemetry.cli import app; app()", "produce"]


def _validator(name: str) -> Draft202012Validator:
    schema = json.loads(resources.files("backend.telemetry.schemas").joinpath(f"{name}.json").read_text())
    return Draft202012Validator(schema)


VALIDATORS = {"gpu.metrics.v1": _validator("gpu.metrics.v1"), "token.usage.v1": _validator("token.usage.v1")}


def assert_valid(message: Message) -> dict:
    """The encoded message validates against its JSON Schema, and its `ts` is RFC 3339 with an offset."""
    document = json.loads(encode(message))
    errors = list(VALIDATORS[document["schema"]].iter_errors(document))
    assert not errors, [e.message for e in errors]
    assert document["ts"].endswith("Z") and datetime.fromisoformat(document["ts"]).tzinfo is not None
    assert decode(encode(message)) == message
    return document


@pytest.fixture
def exporter() -> Iterator[str]:
    """dcgm-exporter's /metrics on a free loopback port, served from a thread."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = EXPORTER_TEXT.encode() if self.path == "/metrics" else b"not found"
            self.send_response(200 if self.path == "/metrics" else 404)
            self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/metrics"
    server.shutdown()
    server.server_close()
    thread.join()


def test_dcgm_scrape_groups_series_by_gpu(exporter):
    scraper = DcgmScraper(exporter)
    try:
        samples = {s.gpu_uuid: s for s in scraper.samples()}
    finally:
        scraper.close()
    assert set(samples) == {L4_0, L4_1}
    busy, idle = samples[L4_0], samples[L4_1]
    assert (busy.host, busy.gpu_index, busy.model, busy.driver, busy.source) == (
        "gke-inference-pool-7f9c-x2b4", 0, "NVIDIA L4", "535.154.05", "dcgm")
    assert busy.labels == {"pci_bus_id": "00000000:00:03.0", "device": "nvidia0", "container": "vllm",
                           "namespace": "inference", "pod": "vllm-mistral-7b-5d8f9c7b6-q4kzt"}
    assert idle.labels == {"pci_bus_id": "00000000:00:04.0", "device": "nvidia1"}
    m = busy.metrics
    assert m["power_usage"] == 58.417 and m["gpu_temp"] == 61 and m["gr_engine_active"] == 0.85321
    assert m["total_energy_consumption"] == 81234567890 and isinstance(m["total_energy_consumption"], int)
    assert m["clocks_event_reasons"] == 4  # the pre-rename DCGM_FI_DEV_CLOCK_THROTTLE_REASONS
    assert m["pipe_fp16_active"] == 0.021 and m["vgpu_license_status"] == 0  # unknown fields kept (→ extra)
    assert len(m) == 26 and idle.metrics["ecc_sbe_vol_total"] == 0
    for sample in samples.values():
        assert_valid(sample)


def test_dcgm_skips_series_without_uuid_and_drops_non_finite_values():
    text = ('# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total 12.5\n'
            f'DCGM_FI_DEV_GPU_TEMP{{gpu="2",UUID="{L4_0}",Hostname="h1"}} NaN\n'
            f'DCGM_FI_DEV_POWER_USAGE{{gpu="2",UUID="{L4_0}",Hostname="h1"}} 70.5\n')
    [sample] = parse(text, at=datetime(2026, 1, 1, tzinfo=UTC))
    assert sample.metrics == {"power_usage": 70.5} and sample.gpu_index == 2 and sample.host == "h1"
    with pytest.raises(InvalidInput, match="not Prometheus text"):
        parse('DCGM_FI_DEV_GPU_TEMP{gpu="0" 31\n')


def test_dcgm_cli_one_shot_prints_json_lines(exporter):
    result = CliRunner().invoke(app, ["pipeline", "produce", "--source", "dcgm", "--url", exporter, "--count", "1",
                                      "--stdout"])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert sorted(d["gpu_uuid"] for d in lines) == sorted([L4_0, L4_1])


def test_dcgm_unreachable_exporter_is_one_clear_error():
    url = f"http://127.0.0.1:{free_port()}/metrics"
    with pytest.raises(Unavailable, match=f"cannot scrape {url}"):
        DcgmScraper(url).samples()
    result = CliRunner().invoke(app, ["pipeline", "produce", "--source", "dcgm", "--url", url, "--stdout"])
    assert result.exit_code == 2 and "cannot scrape" in result.output and "Traceback" not in result.output


def test_csv_replay_groups_rows_and_reports_bad_rows_by_line(caplog):
    caplog.set_level(logging.WARNING)
    replay = CsvReplay(DATA / "dcgm_long.csv")
    advanced: list[int] = []
    samples = list(replay.samples(progress=advanced.append))
    assert sum(advanced) == replay.count_rows() == replay.stats.rows == 24
    assert (replay.stats.bad_rows, replay.stats.samples) == (4, 4)
    bad_lines = sorted(int(r.message.split("line ")[1].split(":")[0]) for r in caplog.records if " line " in r.message)
    assert bad_lines == [9, 10, 16, 17]
    assert any("4 bad row(s) skipped" in r.message for r in caplog.records)
    by_key = {(s.ts, s.gpu_uuid): s for s in samples}
    first = by_key[datetime(2025, 6, 1, 10, 0, tzinfo=UTC), L4_0]
    assert first.metrics == {"gpu_temp": 60, "power_usage": 58.417, "gpu_util": 87, "ecc_sbe_vol_total": 2,
                             "pipe_fp16_active": 0.021}
    assert (first.host, first.gpu_index, first.driver, first.source) == (
        "gke-inference-pool-7f9c-x2b4", 0, "535.154.05", "csv")
    assert first.labels["pod"] == "vllm-mistral-7b-5d8f9c7b6-q4kzt" and first.labels["pci_bus_id"] == "00000000:00:03.0"
    later = by_key[datetime(2025, 6, 1, 10, 0, 30, tzinfo=UTC), L4_1]
    assert later.metrics["power_usage"] == 16.402 and "pod" not in later.labels
    for sample in samples:
        assert_valid(sample)


def test_csv_cli_replays_with_progress_and_summary(tmp_path):
    result = CliRunner().invoke(app, ["pipeline", "produce", "--source", "csv", "--file",
                                      str(DATA / "dcgm_long.csv"), "--stdout"])
    assert result.exit_code == 0, result.output
    assert sum(1 for line in result.stdout.splitlines() if line.startswith('{"schema"')) == 4
    assert "24 rows → 4 samples; 4 bad row(s) skipped" in " ".join(result.output.split())
    wrong = tmp_path / "wrong.csv"
    wrong.write_text("time,value\n1,2\n")
    result = CliRunner().invoke(app, ["pipeline", "produce", "--source", "csv", "--file", str(wrong), "--stdout"])
    assert result.exit_code == 2 and "is not the DCGM CSV header" in " ".join(result.output.split())
    assert "replaying" not in result.output  # refused before any work starts


def test_csv_speed_paces_the_replay_in_scaled_real_time():
    """Two timestamps 30 s apart at 100× take about 0.3 s (a loose bound: this is behaviour, not a benchmark)."""
    from time import monotonic

    from backend.telemetry.collectors.pacing import paced

    began = monotonic()
    samples = list(paced(CsvReplay(DATA / "dcgm_long.csv").samples(), speed=100))
    assert len(samples) == 4 and monotonic() - began >= 0.29


def test_nvml_without_driver_is_one_line_and_exit_2():
    from backend.telemetry.collectors.nvml import NvmlCollector, NvmlUnavailable

    with pytest.raises(NvmlUnavailable, match=r"^NVIDIA driver not found: NVML could not be loaded \(.+\)$"):
        NvmlCollector()
    result = CliRunner().invoke(app, ["pipeline", "produce", "--source", "nvml", "--count", "1"])
    assert result.exit_code == 2
    assert " ".join(result.output.split()).startswith("error: NVIDIA driver not found: NVML could not be loaded (")
    assert isinstance(result.exception, SystemExit) and "Traceback" not in result.output


@pytest.mark.gpu
def test_nvml_reads_a_real_gpu():
    from backend.telemetry.collectors.nvml import NvmlCollector

    collector = NvmlCollector()
    try:
        samples = list(collector.samples())
    finally:
        collector.close()
    assert samples and all(s.source == "nvml" and s.gpu_uuid.startswith(("GPU-", "MIG-")) for s in samples)
    for sample in samples:
        assert {"gpu_temp", "power_usage", "gpu_util", "fb_used", "sm_clock"} <= set(sample.metrics)
        assert 0 <= sample.metrics["gpu_util"] <= 100 and sample.metrics["power_usage"] > 0
        assert_valid(sample)


def test_every_simulated_message_validates_against_the_schemas():
    start = datetime(2026, 3, 2, tzinfo=UTC)
    fleet = Fleet(hosts=3, gpus_per_host=2, seed=9, faults=[FaultSpec(k, onset=timedelta(minutes=5)) for k in KINDS],
                  start=start)
    samples = list(fleet.samples(end=start + timedelta(hours=8), interval=timedelta(minutes=2)))
    serving = Fleet(hosts=3, gpus_per_host=2, seed=9, start=start)
    usage = list(token_usage_only(serving, serving.samples(end=start + timedelta(hours=1),
                                                           interval=timedelta(seconds=20))))
    assert isinstance(samples[0], GpuSample) and usage
    for message in [*samples, *usage]:
        assert_valid(message)


def test_tokens_source_and_fault_schedule_through_the_cli(tmp_path):
    schedule = tmp_path / "faults.json"
    result = CliRunner().invoke(app, ["pipeline", "produce", "--source", "tokens", "--hosts", "2", "--seed", "3",
                                      "--count", "13", "--interval", "10s", "--token-interval", "30s",
                                      "--fault", "ecc:gpu-node-01/4@1h", "--schedule-out", str(schedule), "--stdout"])
    assert result.exit_code == 0, result.output
    documents = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    serving = {g.uuid for g in Fleet(hosts=2, gpus_per_host=8, seed=3).gpus if g.served_model}
    assert documents and {d["schema"] for d in documents} == {"token.usage.v1"}
    assert {d["gpu_uuid"] for d in documents} == serving
    [event] = json.loads(schedule.read_text())
    assert (event["kind"], event["host"], event["gpu_index"], event["severity"]) == ("ecc", "gpu-node-01", 4,
                                                                                     "critical")
    assert "fault ecc on gpu-node-01/4" in " ".join(result.output.split())


def test_stdout_reader_going_away_stops_quietly():
    proc = subprocess.Popen([*PRODUCE, "--source", "simulator", "--hosts", "50", "--count", "100", "--stdout"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert json.loads(proc.stdout.readline())["schema"] == "gpu.metrics.v1"
    proc.stdout.close()  # like `| head -1`
    stderr = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 0, stderr
    assert "Traceback" not in stderr and "Broken pipe" not in stderr
