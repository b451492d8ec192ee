"""The demo orchestrator: which components exist, child process groups stopped cleanly, nginx-rtmp rendered from
the streams template, backfill progress counted from stored samples, and the first admin."""

from __future__ import annotations

import shutil
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psutil
import psycopg
import pytest
from pydantic import SecretStr

from backend import demo
from backend.config import Settings
from backend.console_auth import login
from backend.identity.bootstrap import ensure_admin
from backend.identity.users import LoginFailed


def test_a_missing_program_is_skipped_with_a_log_line(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    stack = demo.DemoStack(tmp_path, settings=Settings())
    caplog.set_level("INFO", logger="backend.demo")
    assert stack.spawn(demo.Component("tool", argv=("no-such-binary-here",))) is None
    assert "skipping tool: no-such-binary-here is not installed" in caplog.text
    assert stack.children == []


def _alive(pids: list[int]) -> list[int]:
    return [pid for pid in pids if psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE]


def test_stop_ends_the_whole_process_group_and_kills_what_ignores_sigterm(tmp_path: Path) -> None:
    stack = demo.DemoStack(tmp_path, settings=Settings())
    polite = stack.spawn(demo.Component("polite", argv=("sh", "-c", "sleep 300 & sleep 300")))
    stubborn = stack.spawn(demo.Component("stubborn", argv=("sh", "-c", "trap '' TERM; sleep 300 & wait")))
    assert polite is not None and stubborn is not None
    time.sleep(0.3)
    family = [p.pid for child in (polite, stubborn)
              for p in [psutil.Process(child.process.pid), *psutil.Process(child.process.pid).children()]]
    assert len(family) >= 4, "each shell has a grandchild sleeping"

    started = time.monotonic()
    stack.stop(timeout=1.0)
    assert time.monotonic() - started < 8
    deadline = time.monotonic() + 2  # killed processes may take a moment to be reaped by init
    while _alive(family) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _alive(family) == []
    assert stack.children == []
    assert (tmp_path / "logs" / "polite.log").exists()


@pytest.mark.skipif(shutil.which("nginx") is None, reason="Debian nginx is not installed")
def test_nginx_rtmp_config_is_rendered_from_the_streams_template(tmp_path: Path) -> None:
    token = "demo-callback-token-" + "d" * 32
    settings = Settings(api_base_url="http://127.0.0.1:18080", streams_callback_token=token)
    setup = demo.prepare_nginx(tmp_path, settings)
    assert setup is not None
    config = (setup.prefix / "conf" / "nginx.conf").read_text()
    assert f"listen 127.0.0.1:{setup.rtmp_port};" in config
    assert f"on_publish http://127.0.0.1:18080/rtmp/on_publish?token={token};" in config
    assert setup.env == {"STREAMS_NGINX_STAT_URL": f"http://127.0.0.1:{setup.http_port}/stat",
                         "STREAMS_NGINX_CONTROL_URL": f"http://127.0.0.1:{setup.http_port}/control"}
    stack = demo.DemoStack(tmp_path, settings=settings)
    child = stack.spawn(demo.Component("nginx-rtmp", argv=setup.argv, ready_port=setup.rtmp_port))
    try:
        assert child is not None and child.process.poll() is None
    finally:
        stack.stop()
    assert child.process.poll() is not None


def test_backfill_progress_counts_stored_samples(settings: Settings) -> None:
    started = datetime.now(UTC)
    stored = demo.store_history(settings, hosts=1, gpus_per_host=2, history=timedelta(minutes=30),
                                interval=timedelta(minutes=1), faults=())
    assert stored == 2 * 30
    advanced: list[int] = []
    counted = demo.follow_backfill(settings, started - timedelta(minutes=31), started - timedelta(minutes=2),
                                   expected=60, advance=advanced.append, poll_s=0.05, settle_polls=2)
    assert counted == 60 and sum(advanced) == 60


def test_first_admin_from_admin_password_then_kept(settings: Settings, db: psycopg.Connection) -> None:
    configured = settings.model_copy(update={"admin_password": SecretStr("the-configured-password")})
    first = ensure_admin(configured)
    assert first.created and first.generated_password is None
    assert login("admin", "the-configured-password", configured).role == "admin"
    again = ensure_admin(configured)
    assert not again.created and again.name == "admin"


def test_first_admin_generated_when_no_password_is_configured(settings: Settings) -> None:
    first = ensure_admin(settings)
    assert first.created and first.generated_password and len(first.generated_password) >= 20
    assert login("admin", first.generated_password, settings).name == "admin"
    with pytest.raises(LoginFailed):
        login("admin", "not-the-password", settings)


def test_a_preparation_step_is_awaited_and_leaves_the_children(tmp_path: Path,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    stack = demo.DemoStack(tmp_path, settings=Settings())
    caplog.set_level("INFO", logger="backend.demo")
    done = stack.spawn(demo.Component("prepare", argv=("sh", "-c", "echo ready"), run_once=True))
    failed = stack.spawn(demo.Component("broken", argv=("sh", "-c", "exit 3"), run_once=True))
    assert done is not None and done.process.returncode == 0
    assert failed is not None and failed.process.returncode == 3
    assert stack.children == []
    assert "prepare finished" in caplog.text
    assert "broken did not finish cleanly (status 3" in caplog.text
    assert (tmp_path / "logs" / "prepare.log").read_text() == "ready\n"
