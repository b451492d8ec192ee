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

from tests.startup_vm import FakeVm, docker_run_args, run_startup

ROOT = Path(__file__).resolve().parents[1]
TERRAFORM = ROOT / "infrastructure" / "terraform"
SCRIPTS = ROOT / "infrastructure" / "scripts"
REHEARSAL = ROOT / "infrastructure" / "rehearsal"
REQUIRED_ENV = {"POSTGRES_PASSWORD": "example-only", "DOCKER_GID": "999"}


def _compose_binary() -> Path:
    import compose

    return Path(compose.__file__).parent / "docker-compose"


def _compose(*args: str, env: dict[str, str] | None = None, files: tuple[Path, ...] = (),
             project_dir: Path = ROOT) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith(("POSTGRES_", "COMPOSE_", "DOCKER_", "REHEARSAL_", "DB_PROFILE"))}
    paths = [arg for path in (ROOT / "docker-compose.yml", *files) for arg in ("-f", str(path))]
    return subprocess.run(
        [str(_compose_binary()), "--project-directory", str(project_dir), *paths, *args],
        capture_output=True, text=True, env=clean | (env or {}), cwd=ROOT, timeout=60,
    )


@pytest.fixture(scope="module")
def compose_model() -> dict[str, Any]:
    result = _compose("--profile", "demo", "--profile", "gpu", "config", "--format", "json", env=REQUIRED_ENV)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_compose_file_is_valid():
    result = _compose("config", "-q", env=REQUIRED_ENV)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("missing", sorted(REQUIRED_ENV))
def test_compose_refuses_to_start_without_a_required_setting(missing: str):
    result = _compose("config", "-q", env={k: v for k, v in REQUIRED_ENV.items() if k != missing})
    assert result.returncode != 0
    assert missing in result.stderr


def test_app_services_keep_local_state_on_a_shared_writable_volume(compose_model):
    """Defect 1: the local secrets store (and the stream-key pepper in it) needs a writable /app/.data."""
    services = compose_model["services"]
    for name, service in services.items():
        if service.get("image", "").startswith("stream-platform:"):
            mounts = {v["target"]: v for v in service.get("volumes", [])}
            assert mounts.get("/app/.data", {}).get("source") == "app-data", name
            assert not mounts["/app/.data"].get("read_only"), name
    assert "app-data" in compose_model["volumes"]
    stages = _dockerfile_stages()
    assert re.search(r"install -d -o app -g app -m 0700 /app/\.data", "\n".join(stages["app"]))


def test_console_and_api_reach_the_engine_with_the_socket_group_only(compose_model):
    for name in ("console", "api"):
        service = compose_model["services"][name]
        assert service["environment"]["DOCKER_HOST"] == "unix:///var/run/docker.sock"
        assert any(v["target"] == "/var/run/docker.sock" for v in service["volumes"]), name
        assert service["group_add"] == ["999"], name
    others = [n for n, s in compose_model["services"].items() if n not in ("console", "api")
              and any(v.get("target") == "/var/run/docker.sock" for v in s.get("volumes", []))]
    assert others == []


def test_nginx_config_job_opens_stat_to_the_containers_own_healthcheck(compose_model):
    command = compose_model["services"]["nginx-config"]["command"]
    allowed = [command[i + 1] for i, word in enumerate(command) if word == "--stat-allow"]
    assert "127.0.0.1" in allowed  # the image's HEALTHCHECK curls /stat on loopback


def test_rehearsal_override_only_swaps_images(tmp_path: Path):
    """The rehearsal runs the production file: its override may replace images that cannot be pulled, nothing
    else; and the merged model differs from production only there."""
    override = yaml.safe_load((REHEARSAL / "docker-compose.rehearsal.yml").read_text())
    assert set(override) == {"services"}
    for name, service in override["services"].items():
        assert set(service) <= {"image", "pull_policy"}, name
    env = REQUIRED_ENV | {"REHEARSAL_POSTGRES_IMAGE": "local/pg", "REHEARSAL_KAFKA_IMAGE": "local/kafka"}
    merged = _compose("--profile", "demo", "config", "--format", "json", env=env, files=(
        REHEARSAL / "docker-compose.rehearsal.yml",), project_dir=tmp_path)
    production = _compose("--profile", "demo", "config", "--format", "json", env=env, project_dir=tmp_path)
    assert merged.returncode == 0 and production.returncode == 0, merged.stderr + production.stderr
    rehearsal, original = json.loads(merged.stdout)["services"], json.loads(production.stdout)["services"]
    assert rehearsal.keys() == original.keys()
    for name in rehearsal:
        strip = {"image", "pull_policy"} if name in override["services"] else set()
        assert {k: v for k, v in rehearsal[name].items() if k not in strip} == \
            {k: v for k, v in original[name].items() if k not in strip}, name


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
                 "scheduler", "nginx-rtmp", "simulator", "collector-nvml"):
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
    stages = _dockerfile_stages()
    app = "\n".join(stages["app"])
    users = re.findall(r"^USER\s+(\S+)", app, re.MULTILINE)
    assert users and users[-1] not in ("root", "0")
    assert "HEALTHCHECK" in app
    assert 'ENTRYPOINT ["stream-platform"]' in app
    nginx = "\n".join(stages["nginx-rtmp"])  # defect 4: nginx ran as root
    nginx_users = re.findall(r"^USER\s+(\S+)", nginx, re.MULTILINE)
    assert nginx_users and nginx_users[-1].split(":")[0] not in ("root", "0")


def test_dockerfile_takes_its_base_images_as_arguments_defaulting_to_production():
    text = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^ARG PYTHON_IMAGE=python:3\.12-slim$", text, re.MULTILINE)
    assert re.search(r"^ARG DEBIAN_IMAGE=debian:bookworm-slim$", text, re.MULTILINE)
    bases = re.findall(r"^FROM\s+(\S+)", text, re.MULTILINE)
    assert bases and set(bases) == {"${PYTHON_IMAGE}", "${DEBIAN_IMAGE}"}


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
    for kind in ("google_compute_instance", "google_compute_instance_group",
                 "google_compute_firewall", "google_service_account", "google_secret_manager_secret",
                 "google_secret_manager_secret_iam_member", "google_project_iam_custom_role",
                 "google_compute_backend_service", "google_compute_target_https_proxy"):
        assert kind in resources, kind
    vm = resources["google_compute_instance"]["gpu"]
    assert vm["scheduling"][0]["on_host_maintenance"] == "TERMINATE"
    assert vm["guest_accelerator"][0]["type"] == "${var.gpu_type}"
    assert "startup.sh" in vm["metadata"]["startup-script"]
    assert vm["metadata"]["platform-secret-ids"] == '${join(",", var.secret_ids)}'  # startup.sh never lists
    assert "google_compute_instance_group_manager" not in resources  # it would restart what the agent stopped


def test_secret_values_never_enter_terraform_state(terraform):
    assert "google_secret_manager_secret_version" not in terraform["resource"]


def test_firewall_sources_are_restricted(terraform):
    rules = terraform["resource"]["google_compute_firewall"]
    for name, rule in rules.items():
        sources = rule["source_ranges"]
        literal = sources if isinstance(sources, list) else [sources]
        if name != "rtmp":
            assert not any("0.0.0.0/0" in str(s) for s in literal), name
    assert rules["console"]["allow"][0]["ports"] == ["8501"]
    api = rules["api"]  # the load balancer never needs the API: IAP and the allowed sources only
    assert api["allow"][0]["ports"] == ["8080"]
    assert api["source_ranges"] == "${concat([local.iap_range], var.allowed_console_cidrs)}"
    assert [n for n, r in rules.items() if "8080" in r["allow"][0]["ports"]] == ["api"]
    ssh = rules["ssh_iap"]
    assert ssh["allow"][0]["ports"] == ["22"] and ssh["source_ranges"] == ["${local.iap_range}"]
    assert rules["rtmp"]["allow"][0]["ports"] == ["1935"]
    assert rules["rtmp"]["source_ranges"] == "${var.allowed_rtmp_cidrs}"


def test_service_account_roles_are_the_least_ones(terraform):
    resources = terraform["resource"]
    members = resources["google_project_iam_member"]
    assert set(members) == {"runtime", "self_stop"}
    assert members["runtime"]["role"] == "${each.value.role}"
    assert members["self_stop"]["role"] == "${google_project_iam_custom_role.self_stop.id}"
    main = _unquote(hcl2.loads((TERRAFORM / "main.tf").read_text()))
    roles = next(b.get("locals", b) for b in main["locals"])["runtime_roles"]
    assert sorted(roles) == ["roles/artifactregistry.reader", "roles/logging.logWriter",
                             "roles/monitoring.metricWriter"]
    custom = resources["google_project_iam_custom_role"]["self_stop"]
    assert sorted(custom["permissions"]) == ["compute.instances.get", "compute.instances.stop"]
    accessor = resources["google_secret_manager_secret_iam_member"]["runtime_accessor"]
    assert accessor["role"] == "roles/secretmanager.secretAccessor"  # per secret, not project-wide


def test_each_vm_may_stop_itself_and_no_sibling(terraform):
    """The self-stop binding names one instance exactly, for that instance's own service account."""
    resources = terraform["resource"]
    self_stop = resources["google_project_iam_member"]["self_stop"]
    assert self_stop["for_each"] == "${toset(local.instance_names)}"
    assert self_stop["member"] == "serviceAccount:${google_service_account.vm[each.value].email}"
    expression = self_stop["condition"][0]["expression"]
    assert expression == ('resource.name == \\"projects/${var.project_id}/zones/${var.zone}/instances/'
                          '${each.value}\\"')
    assert "startsWith" not in expression
    vm = resources["google_compute_instance"]["gpu"]
    assert vm["for_each"] == self_stop["for_each"] and vm["name"] == "${each.value}"
    assert vm["service_account"][0]["email"] == "${google_service_account.vm[each.value].email}"
    assert resources["google_service_account"]["vm"]["for_each"] == self_stop["for_each"]


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
    scripts = sorted([*SCRIPTS.glob("*.sh"), *REHEARSAL.glob("*.sh")])
    assert len(scripts) >= 6
    result = subprocess.run(["shellcheck", *map(str, scripts)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout


def test_startup_script_is_idempotent_by_construction():
    text = (SCRIPTS / "startup.sh").read_text()
    assert text.startswith("#!/usr/bin/env bash") and "set -euo pipefail" in text
    assert "command -v docker" in text  # installs the runtime only when missing
    assert "mv -f" in text and "chmod 0600" in text  # secrets file replaced atomically, root-only
    assert "systemctl enable" in text and "nvidia-smi" in text


# --- startup.sh on a fake VM (metadata server, Secret Manager, stub docker/systemctl) ------------------------

def test_startup_reads_only_the_named_secrets_and_installs_both_units(tmp_path: Path):
    """Defect 3: the VM's account may access each secret but not list them; listing stopped the script (set -e)
    before it installed the auto-shutdown agent."""
    vm = FakeVm(secrets={"database-url": "postgresql://db.internal/platform", "admin-password": "first admin pw",
                         "stream-key-pepper": None})
    run = run_startup(vm, tmp_path)
    assert run.returncode == 0, run.output
    assert not [r for r in run.requests if r.split("?")[0].endswith("/secrets")]  # never listed
    assert run.env_file.read_text().splitlines() == ["DATABASE_URL=postgresql://db.internal/platform",
                                                     "ADMIN_PASSWORD=first admin pw"]
    assert run.env_file.stat().st_mode & 0o777 == 0o600
    assert "stream-platform-stream-key-pepper has no enabled version" in "\n".join(run.calls)
    assert "first admin pw" not in run.output + "\n".join(run.calls)
    assert set(run.units) == {"stream-platform-collector", "stream-platform-autoshutdown"}
    assert "systemctl restart stream-platform-autoshutdown.service" in run.calls


def test_startup_installs_the_agent_even_when_secrets_cannot_be_read(tmp_path: Path):
    run = run_startup(FakeVm(secrets={"database-url": "x"}, token_works=False), tmp_path)
    assert run.returncode == 0, run.output
    assert "stream-platform-autoshutdown" in run.units
    assert run.env_file.exists() and run.env_file.stat().st_mode & 0o777 == 0o600


def test_collector_and_agent_share_the_vms_network_and_hostname(tmp_path: Path):
    """Defect 5: without the host's network the collector reported the container id as its host, so the agent's
    GPU fallback (which looks its own hostname up) never matched."""
    run = run_startup(FakeVm(secrets={}), tmp_path)
    collector = docker_run_args(run.units["stream-platform-collector"])
    agent = docker_run_args(run.units["stream-platform-autoshutdown"])
    for args in (collector, agent):
        assert "--network host" in " ".join(args)
        assert "--hostname" not in args and "--uts" not in " ".join(args)
