"""The systemd unit and its install script: shellcheck-clean, installs into given directories, verifies."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parents[1] / "infrastructure" / "scripts"
INSTALL = SCRIPTS / "install-autoshutdown.sh"
UNIT = "stream-platform-autoshutdown.service"


@pytest.mark.skipif(not shutil.which("shellcheck"), reason="needs Debian shellcheck")
def test_install_script_is_shellcheck_clean() -> None:
    result = subprocess.run(["shellcheck", str(INSTALL)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout


def run_install(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    calls = tmp_path / "systemctl.calls"
    fake_systemctl = tmp_path / "systemctl"
    fake_systemctl.write_text(f'#!/bin/sh\necho "$*" >> {calls}\n')
    fake_systemctl.chmod(0o755)
    env = os.environ | {"UNIT_DIR": str(tmp_path / "units"), "CONF_DIR": str(tmp_path / "conf"),
                        "SYSTEMCTL": str(fake_systemctl)}
    return subprocess.run(["bash", str(INSTALL), "--venv", sys.prefix, *args], env=env, capture_output=True,
                          text=True, timeout=120, check=False)


def test_install_writes_the_unit_and_a_private_env_file(tmp_path: Path) -> None:
    result = run_install(tmp_path, "--action", "gcp")
    assert result.returncode == 0, result.stderr
    unit = (tmp_path / "units" / UNIT).read_text()
    assert f"ExecStart={sys.prefix}/bin/stream-platform autoshutdown run" in unit
    assert f"EnvironmentFile=-{tmp_path}/conf/autoshutdown.env" in unit and "@" not in unit
    env_file = tmp_path / "conf" / "autoshutdown.env"
    assert "AUTOSHUTDOWN_ACTION=gcp" in env_file.read_text()
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    assert (tmp_path / "systemctl.calls").read_text().splitlines() == [
        "daemon-reload", f"enable {UNIT}", f"restart {UNIT}"]

    again = run_install(tmp_path, "--action", "command", "--no-start")
    assert again.returncode == 0 and "kept" in again.stdout
    assert "AUTOSHUTDOWN_ACTION=gcp" in env_file.read_text()  # an operator's settings are never overwritten

    if shutil.which("systemd-analyze"):
        verify = subprocess.run(["systemd-analyze", "verify", str(tmp_path / "units" / UNIT)],
                                capture_output=True, text=True, timeout=60, check=False)
        assert verify.returncode == 0 and "Unknown" not in verify.stderr, verify.stderr


def test_install_refuses_a_bad_action(tmp_path: Path) -> None:
    result = run_install(tmp_path, "--action", "reboot")
    assert result.returncode == 2 and "--action must be dry-run, command or gcp, not reboot" in result.stderr
    assert not (tmp_path / "units").exists()
