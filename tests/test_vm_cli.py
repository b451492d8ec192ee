"""`stream-platform autoshutdown` end to end through the CLI: evaluate, status, snooze, skip, history."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from typer.testing import CliRunner

from backend import audit
from backend.cli import app
from backend.config import Settings, get_settings

FAST = ["--idle-seconds", "0", "--warn-seconds", "0", "--min-uptime-seconds", "0", "--no-ssh", "--host", "cli-host"]


@pytest.fixture
def quiet_host(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    """CPU and network thresholds out of reach: other work on this shared machine must not make the test flaky."""
    monkeypatch.setenv("AUTOSHUTDOWN_CPU_BUSY_PERCENT", "101")
    monkeypatch.setenv("AUTOSHUTDOWN_NETWORK_KIB_PER_S", "1e12")
    get_settings.cache_clear()
    yield get_settings()
    get_settings.cache_clear()


def invoke(*args: str) -> dict:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_evaluate_stop_in_dry_run_then_status(quiet_host: Settings, db: psycopg.Connection) -> None:
    out = invoke("autoshutdown", "evaluate", "--json", *FAST)
    assert out["host"] == "cli-host" and out["decision"] == "stop", out["reasons"]
    assert {s["signal"]: s["state"] for s in out["signals"]} == {
        "rtmp": "n/a", "gpu": "n/a", "cpu": "idle", "network": "idle", "schedule": "idle"}
    assert out["events"] == ["warning_issued"]
    assert out["stop"]["kind"] == "would_stop" and out["stop"]["detail"]["action"] == "dry-run"

    status = invoke("autoshutdown", "status", "--json", "--host", "cli-host")
    assert status["latest"]["decision"] == "stop"
    assert [e["kind"] for e in status["events"]] == ["would_stop", "warning_issued"]
    assert status["state"]["last_stop_at"] is not None and status["seconds_left"] is None
    history = invoke("autoshutdown", "history", "--json", "--host", "cli-host")
    assert [h["decision"] for h in history] == ["stop"]


def test_unknown_probe_blocks_and_says_why(quiet_host: Settings) -> None:
    probe = f"{sys.executable} -c 'raise SystemExit(3)'"
    out = invoke("autoshutdown", "evaluate", "--json", *FAST, "--probe", probe)
    assert out["decision"] == "active" and out["stop"] is None
    assert out["reasons"] == ["probe1 unknown: probe exited 3"]


def test_snooze_and_skip_are_audited_and_hold_the_stop(quiet_host: Settings, db: psycopg.Connection) -> None:
    runner = CliRunner()
    snoozed = runner.invoke(app, ["autoshutdown", "snooze", "30", "--host", "cli-host"])
    assert snoozed.exit_code == 0 and "snoozed: no stop before" in snoozed.output
    held = invoke("autoshutdown", "evaluate", "--json", *FAST)
    assert held["decision"] == "held" and any(r.startswith("snoozed until") for r in held["reasons"])
    skipped = runner.invoke(app, ["autoshutdown", "skip", "--host", "cli-host"])
    assert skipped.exit_code == 0, skipped.output
    rows = [(e.actor, e.action, e.target, e.outcome) for e in reversed(audit.entries(db, area="vm"))]
    assert rows == [
        ("system", "autoshutdown.snoozed", "cli-host", "ok"), ("system", "autoshutdown.skipped", "cli-host", "ok")
    ]
    bad = runner.invoke(app, ["autoshutdown", "snooze", "0", "--host", "cli-host"])
    assert bad.exit_code == 2 and "snooze seconds must be between" in bad.output


def test_without_a_database_the_state_file_keeps_the_countdown(
    quiet_host: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DATABASE_URL")
    get_settings.cache_clear()
    state = str(tmp_path / "agent.json")
    slow = ["--idle-seconds", "600", "--warn-seconds", "60", "--min-uptime-seconds", "0", "--no-ssh", "--host", "h"]
    first = invoke("autoshutdown", "evaluate", "--json", *slow, "--state-file", state)
    second = invoke("autoshutdown", "evaluate", "--json", *slow, "--state-file", state)
    assert first["decision"] == second["decision"] == "idle"
    assert second["idle_since"] == first["idle_since"]
    status = invoke("autoshutdown", "status", "--json", "--host", "h", "--state-file", state)
    assert status["state"]["idle_since"] == first["idle_since"] and status["latest"]["at"] == second["at"]


def test_bad_options_are_one_line_errors(quiet_host: Settings) -> None:
    result = CliRunner().invoke(app, ["autoshutdown", "evaluate", "--never-stop", "Funday 09:00-10:00"])
    assert result.exit_code == 2 and "unknown day" in result.output and "Traceback" not in result.output


def test_run_polls_until_sigterm_then_exits_cleanly(tmp_path: Path) -> None:
    import os
    import signal
    import subprocess
    import time

    state = tmp_path / "agent.json"
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"} | {"SECRETS_ENV_FILE": "/nonexistent"}
    agent = subprocess.Popen(
        [str(Path(sys.executable).parent / "stream-platform"), "autoshutdown", "run", "--poll-seconds", "0.2",
         "--idle-seconds", "3600", "--state-file", str(state), "--host", "run-host", "--no-ssh"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and agent.poll() is None:
            if state.exists() and len(json.loads(state.read_text()).get("evaluations", [])) >= 3:
                break
            time.sleep(0.2)
        agent.send_signal(signal.SIGTERM)
        assert agent.wait(timeout=15) == 0, agent.stderr.read() if agent.stderr else ""
    finally:
        if agent.poll() is None:
            agent.kill()
    evaluations = json.loads(state.read_text())["evaluations"]
    assert len(evaluations) >= 3 and {e["host"] for e in evaluations} == {"run-host"}
    assert "auto-shutdown agent on run-host: action dry-run" in (agent.stderr.read() if agent.stderr else "")


POLICY_OPTIONS = ["--idle-seconds", "--threshold", "--warn-seconds", "--warn", "--min-uptime-seconds", "--min-uptime",
                  "--poll-seconds", "--poll", "--max-age-seconds", "--max-age", "--never-stop"]
AGENT_OPTIONS = [*POLICY_OPTIONS, "--action", "--command", "--probe", "--hook", "--nginx-stat-url", "--state-file",
                 "--host", "--no-ssh"]


def test_evaluate_and_run_take_one_declaration_of_the_agent_options(tmp_path: Path) -> None:
    """The systemd unit and startup.sh call `run` with these options: both commands keep exactly them, and
    `replay` takes the policy's own."""
    from typer.main import get_command

    from backend.vm.autoshutdown_cli import AgentOptions
    from backend.vm.autoshutdown_cli import app as autoshutdown

    commands = get_command(autoshutdown).commands  # type: ignore[attr-defined]
    assert [o for p in commands["run"].params for o in p.opts] == AGENT_OPTIONS
    assert [o for p in commands["evaluate"].params for o in p.opts] == [*AGENT_OPTIONS, "--json"]
    assert [o for p in commands["replay"].params for o in p.opts] == [*POLICY_OPTIONS, "--since", "--host", "--stops",
                                                                      "--json"]
    given = AgentOptions(idle_seconds=60, warn_seconds=5, min_uptime_seconds=0, poll_seconds=2, max_age_seconds=900,
                         action="command", command="true", never_stop=["Mon-Fri 09:00-18:00 UTC"], probes=["p"],
                         hooks=["h"], nginx_stat_url="http://127.0.0.1:8080/stat", state_file=tmp_path / "s.json",
                         host="h1", no_ssh=True).settings()
    assert given.model_dump(include={f"autoshutdown_{k}" for k in (
        "idle_seconds", "warn_seconds", "min_uptime_seconds", "poll_seconds", "max_age_seconds", "action", "command",
        "never_stop", "probes", "hooks", "nginx_stat_url", "state_file", "host", "ssh")}) == {
        "autoshutdown_idle_seconds": 60, "autoshutdown_warn_seconds": 5, "autoshutdown_min_uptime_seconds": 0,
        "autoshutdown_poll_seconds": 2, "autoshutdown_max_age_seconds": 900, "autoshutdown_action": "command",
        "autoshutdown_command": "true", "autoshutdown_never_stop": ["Mon-Fri 09:00-18:00 UTC"],
        "autoshutdown_probes": ["p"], "autoshutdown_hooks": ["h"],
        "autoshutdown_nginx_stat_url": "http://127.0.0.1:8080/stat", "autoshutdown_state_file": tmp_path / "s.json",
        "autoshutdown_host": "h1", "autoshutdown_ssh": False}
    unchanged = AgentOptions().settings()
    assert unchanged.autoshutdown_ssh and unchanged.autoshutdown_probes == []
