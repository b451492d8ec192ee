"""Deployment artefacts validated offline: compose (Compose v2 binary), Terraform (fmt + structure), shell
scripts (shellcheck) and the Dockerfile. Nothing here reaches the network."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import hcl2
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
TERRAFORM = ROOT / "infrastructure" / "terraform"
SCRIPTS = ROOT / "infrastructure" / "scripts"


def _compose_binary() -> Path:
    import compose

    return Path(compose.__file__).parent / "docker-compose"


def _compose(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("POSTGRES_", "COMPOSE_"))}
    return subprocess.run(
        [str(_compose_binary()), "-f", str(ROOT / "docker-compose.yml"), *args],
        capture_output=True, text=True, env=clean | (env or {}), cwd=ROOT, timeout=60,
    )


@pytest.fixture(scope="module")
def compose_model() -> dict[str, Any]:
    result = _compose("--profile", "demo", "--profile", "gpu", "config", "--format", "json",
                      env={"POSTGRES_PASSWORD": "example-only"})
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_compose_file_is_valid():
    result = _compose("config", "-q", env={"POSTGRES_PASSWORD": "example-only"})
    assert result.returncode == 0, result.stderr


def test_compose_refuses_to_start_without_a_database_password():
    result = _compose("config", "-q")
    assert result.returncode != 0
    assert "POSTGRES_PASSWORD" in result.stderr


def test_only_console_api_and_rtmp_ports_are_published(compose_model):
    published = {
        name: sorted(int(p["target"]) for p in service.get("ports", []))
        for name, service in compose_model["services"].items()
        if service.get("ports")
    }
    assert published == {"api": [8080], "console": [8501], "nginx-rtmp": [1935]}


def test_compose_services_profiles_and_dependencies(compose_model):
    services = compose_model["services"]
    for name in ("timescaledb", "kafka", "kafka-init", "migrate", "api", "console", "sink", "health-evaluator",
                 "nginx-rtmp", "simulator", "collector-nvml"):
        assert name in services, name
    assert services["timescaledb"]["image"].startswith("timescale/timescaledb")
    assert "healthcheck" in services["timescaledb"] and "healthcheck" in services["kafka"]
    assert services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"  # KRaft, no ZooKeeper
    assert services["sink"]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert services["sink"]["depends_on"]["kafka-init"]["condition"] == "service_completed_successfully"
    assert services["migrate"]["depends_on"]["timescaledb"]["condition"] == "service_healthy"
    assert services["simulator"]["profiles"] == ["demo"]
    assert services["collector-nvml"]["profiles"] == ["gpu"]
    devices = services["collector-nvml"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["capabilities"] == ["gpu"]
    raw = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert raw["x-app"]["env_file"] == [{"path": "secrets.env", "required": False}]


def test_compose_commands_are_real_cli_commands(compose_model):
    """Each app service's command parses as a `stream-platform` command line (catches renamed commands/flags)."""
    from typer.testing import CliRunner

    from backend.cli import app

    for name, service in compose_model["services"].items():
        if service.get("image", "").startswith("stream-platform:") and name != "console":
            result = CliRunner().invoke(app, [*service["command"], "--help"])
            assert result.exit_code == 0, f"{name}: {service['command']}: {result.output}"


# --- Dockerfile -------------------------------------------------------------------------------------------

def _dockerfile_stages() -> dict[str, list[str]]:
    stages: dict[str, list[str]] = {}
    current = None
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        match = re.match(r"FROM\s+\S+\s+AS\s+(\S+)", line, re.IGNORECASE)
        if match:
            current = match.group(1)
            stages[current] = []
        if current:
            stages[current].append(line)
    return stages


def test_dockerfile_runs_as_non_root_with_a_healthcheck():
    app = "\n".join(_dockerfile_stages()["app"])
    users = re.findall(r"^USER\s+(\S+)", app, re.MULTILINE)
    assert users and users[-1] not in ("root", "0")
    assert "HEALTHCHECK" in app
    assert 'ENTRYPOINT ["stream-platform"]' in app
    assert "nginx-rtmp" in _dockerfile_stages()


def test_no_secrets_are_baked_into_images():
    text = (ROOT / "Dockerfile").read_text()
    assert "secrets.env" not in re.sub(r"SECRETS_ENV_FILE=\S+", "", text)
    for line in text.splitlines():
        if re.match(r"^\s*(ENV|ARG)\b", line):
            assert not re.search(r"(PASSWORD|SECRET_KEY|TOKEN|PEPPER)\s*=", line, re.IGNORECASE), line
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert "secrets.env" in ignored and ".git" in ignored and ".data" in ignored


# --- Terraform --------------------------------------------------------------------------------------------

def _unquote(value: Any) -> Any:
    if isinstance(value, dict):
        return {_unquote(k): _unquote(v) for k, v in value.items() if k != "__is_block__"}
    if isinstance(value, list):
        return [_unquote(v) for v in value]
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    return value


@pytest.fixture(scope="module")
def terraform() -> dict[str, dict[str, dict[str, Any]]]:
    """{resource type: {name: body}} and variables across every .tf file."""
    resources: dict[str, dict[str, Any]] = {}
    variables: dict[str, Any] = {}
    for path in sorted(TERRAFORM.glob("*.tf")):
        parsed = _unquote(hcl2.loads(path.read_text()))
        for block in parsed.get("resource", []):
            for kind, named in block.items():
                resources.setdefault(kind, {}).update(named)
        for block in parsed.get("variable", []):
            variables.update(block)
    return {"resource": resources, "variable": variables}


def test_required_resources_exist(terraform):
    resources = terraform["resource"]
    for kind in ("google_compute_instance_template", "google_compute_instance_group_manager",
                 "google_compute_firewall", "google_service_account", "google_secret_manager_secret",
                 "google_secret_manager_secret_iam_member", "google_project_iam_custom_role",
                 "google_compute_backend_service", "google_compute_target_https_proxy"):
        assert kind in resources, kind
    template = resources["google_compute_instance_template"]["gpu"]
    assert template["scheduling"][0]["on_host_maintenance"] == "TERMINATE"
    assert template["guest_accelerator"][0]["type"] == "${var.gpu_type}"
    assert "startup.sh" in template["metadata"]["startup-script"]


def test_secret_values_never_enter_terraform_state(terraform):
    assert "google_secret_manager_secret_version" not in terraform["resource"]


def test_firewall_sources_are_restricted(terraform):
    rules = terraform["resource"]["google_compute_firewall"]
    for name, rule in rules.items():
        sources = rule["source_ranges"]
        literal = sources if isinstance(sources, list) else [sources]
        if name != "rtmp":
            assert not any("0.0.0.0/0" in str(s) for s in literal), name
    ssh = rules["ssh_iap"]
    assert ssh["allow"][0]["ports"] == ["22"] and ssh["source_ranges"] == ["${local.iap_range}"]
    assert rules["rtmp"]["allow"][0]["ports"] == ["1935"]
    assert rules["rtmp"]["source_ranges"] == "${var.allowed_rtmp_cidrs}"


def test_service_account_roles_are_the_least_ones(terraform):
    resources = terraform["resource"]
    roles = {m["role"] for m in resources["google_project_iam_member"].values()}
    assert roles == {"roles/logging.logWriter", "roles/monitoring.metricWriter", "roles/artifactregistry.reader",
                     "${google_project_iam_custom_role.self_stop.id}"}
    custom = resources["google_project_iam_custom_role"]["self_stop"]
    assert sorted(custom["permissions"]) == ["compute.instances.get", "compute.instances.stop"]
    assert "startsWith" in resources["google_project_iam_member"]["self_stop"]["condition"][0]["expression"]
    accessor = resources["google_secret_manager_secret_iam_member"]["runtime_accessor"]
    assert accessor["role"] == "roles/secretmanager.secretAccessor"  # per secret, not project-wide


def test_variables_are_described_and_console_cidrs_validated(terraform):
    variables = terraform["variable"]
    assert all(v.get("description") for v in variables.values())
    assert "0.0.0.0/" in str(variables["allowed_console_cidrs"]["validation"])
    assert (TERRAFORM / "terraform.tfvars.example").exists()
    assert not list(TERRAFORM.glob("*.tfstate*")) and not (TERRAFORM / "terraform.tfvars").exists()


@pytest.mark.skipif(shutil.which("terraform") is None, reason="terraform is not installed")
def test_terraform_fmt_check():
    result = subprocess.run(["terraform", "fmt", "-check", "-recursive", str(TERRAFORM)], capture_output=True,
                            text=True, env=os.environ | {"CHECKPOINT_DISABLE": "1"}, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


# --- scripts --------------------------------------------------------------------------------------------------

def test_shell_scripts_are_shellcheck_clean():
    scripts = sorted(SCRIPTS.glob("*.sh"))
    assert scripts
    result = subprocess.run(["shellcheck", *map(str, scripts)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout


def test_startup_script_is_idempotent_by_construction():
    text = (SCRIPTS / "startup.sh").read_text()
    assert text.startswith("#!/usr/bin/env bash") and "set -euo pipefail" in text
    assert "command -v docker" in text  # installs the runtime only when missing
    assert "mv -f" in text and "chmod 0600" in text  # secrets file replaced atomically, root-only
    assert "systemctl enable" in text and "nvidia-smi" in text
