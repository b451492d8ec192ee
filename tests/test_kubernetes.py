"""infrastructure/kubernetes: both overlays render with `kubectl kustomize`, every object validates (built-in kinds
with kubernetes-validate's bundled schemas, KEDA and CSI objects with the CRD schemas in the repository), the
workloads match docker-compose.yml and the hardening, scaling, network and secret rules the docs promise, and
checkov finds nothing beyond the accepted baseline (infrastructure/checkov-baseline.yaml)."""

from __future__ import annotations

import copy
import fnmatch
import json
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from backend.api_app import create_app
from backend.config import Settings

ROOT = Path(__file__).resolve().parent.parent
KUBE = ROOT / "infrastructure" / "kubernetes"
OVERLAYS = ("dev", "prod")
K8S_VERSION = "1.30.0"
CHECKOV = Path(os.environ.get("CHECKOV", ROOT / ".venv" / "tools" / "checkov" / "bin" / "checkov"))
APP_COMPONENTS = {"api", "console", "sink", "health-evaluator", "nginx-rtmp", "migrate", "archive", "maintain"}


def _kubectl() -> str:
    found = shutil.which("kubectl")
    if found is None:
        pytest.skip("kubectl is not installed: `make system-deps` installs Debian's kubernetes-client")
    return found


def render(overlay: str) -> str:
    result = subprocess.run([_kubectl(), "kustomize", str(KUBE / "overlays" / overlay)], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[dict[str, Any]]]:
    return {overlay: [d for d in yaml.safe_load_all(render(overlay)) if d] for overlay in OVERLAYS}


def _crd_schemas() -> dict[tuple[str, str], dict[str, Any]]:
    """(apiVersion, kind) → the openAPIV3Schema of each CRD kept in infrastructure/kubernetes/crds."""
    schemas = {}
    for path in sorted((KUBE / "crds").glob("*.yaml")):
        crd = yaml.safe_load(path.read_text())
        for version in crd["spec"]["versions"]:
            api = f"{crd['spec']['group']}/{version['name']}"
            schemas[(api, crd["spec"]["names"]["kind"])] = version["schema"]["openAPIV3Schema"]
    return schemas


def validate(obj: dict[str, Any], crds: dict[tuple[str, str], dict[str, Any]]) -> None:
    """Raise on an invalid object: CRD kinds against the repository's schemas, the rest against Kubernetes'."""
    schema = crds.get((obj["apiVersion"], obj["kind"]))
    if schema is not None:
        jsonschema.validate(obj, schema)
    else:
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)


def _named(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]


def _one(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    (found,) = _named(docs, kind, name)
    return found


def _pod_templates(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Pod spec of every workload, by name."""
    pods = {}
    for d in docs:
        if d["kind"] in ("Deployment", "Job"):
            pods[d["metadata"]["name"]] = d["spec"]["template"]["spec"]
        elif d["kind"] == "CronJob":
            pods[d["metadata"]["name"]] = d["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return pods


def _containers(pod: dict[str, Any]) -> list[dict[str, Any]]:
    return [*pod.get("initContainers", []), *pod["containers"]]


def _config(docs: list[dict[str, Any]]) -> dict[str, str]:
    (config_map,) = [d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"].startswith(
        "stream-platform-config")]
    return config_map["data"]


def test_both_overlays_render_every_workload(rendered) -> None:
    for overlay, docs in rendered.items():
        assert {d["metadata"]["name"] for d in _named(docs, "Deployment")} == {
            "api", "console", "sink", "health-evaluator", "nginx-rtmp"}, overlay
        assert [d["metadata"]["name"] for d in _named(docs, "Job")] == ["migrate"]
        assert {d["metadata"]["name"] for d in _named(docs, "CronJob")} == {"archive", "maintain"}
        namespace = _one(docs, "Namespace", f"stream-platform{'-dev' if overlay == 'dev' else ''}")["metadata"]["name"]
        assert all(d["metadata"].get("namespace") == namespace for d in docs if d["kind"] != "Namespace")


def test_every_object_validates_against_kubernetes_or_the_kept_crd_schemas(rendered) -> None:
    crds = _crd_schemas()
    assert set(crds) == {("keda.sh/v1alpha1", "ScaledObject"),
                         ("secrets-store.csi.x-k8s.io/v1", "SecretProviderClass")}
    seen = set()
    for docs in rendered.values():
        for obj in docs:
            validate(obj, crds)
            seen.add(obj["kind"])
    assert {"ScaledObject", "SecretProviderClass", "NetworkPolicy", "HorizontalPodAutoscaler",
            "PodDisruptionBudget"} <= seen


def test_validation_catches_a_misspelt_field(rendered) -> None:
    """The checks above can fail: a typo in a built-in object and in each CRD object is refused."""
    crds, docs = _crd_schemas(), rendered["prod"]
    broken = copy.deepcopy(_one(docs, "Deployment", "api"))
    broken["spec"]["template"]["spec"]["containers"][0]["imagePullPolicyy"] = "Always"
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(broken, crds)
    for kind, name, field in (("ScaledObject", "sink", "maxReplicas"),
                              ("SecretProviderClass", "stream-platform-secrets", "providr")):
        broken = copy.deepcopy(_one(docs, kind, name))
        broken["spec"][field] = 3
        with pytest.raises(jsonschema.ValidationError):
            validate(broken, crds)


def _compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]


def test_workloads_run_the_same_commands_as_docker_compose(rendered) -> None:
    services, pods = _compose(), _pod_templates(rendered["prod"])
    by_name = {c["name"]: c for pod in pods.values() for c in _containers(pod)}
    for container, service in (("api", "api"), ("sink", "sink"), ("health-evaluator", "health-evaluator"),
                               ("migrate", "migrate")):
        assert by_name[container]["args"] == services[service]["command"], container
        assert "command" not in by_name[container]  # the image's entrypoint: stream-platform
    assert by_name["console"]["command"] == services["console"]["entrypoint"]
    assert by_name["console"]["args"] == services["console"]["command"]
    assert by_name["render-config"]["args"][:2] == services["nginx-config"]["command"][:2] == ["streams",
                                                                                            "nginx-config"]
    assert by_name["nginx"]["command"] == services["nginx-rtmp"]["command"]
    assert by_name["archive"]["args"] == ["pipeline", "archive"]
    assert by_name["maintain"]["args"] == ["pipeline", "maintain"]


def test_config_map_names_real_settings(rendered) -> None:
    for docs in rendered.values():
        unknown = {k for k in _config(docs) if k.lower() not in Settings.model_fields} - {"HOME"}
        assert not unknown, f"not settings (typo?): {unknown}"


def test_pods_are_hardened_and_probed_on_real_endpoints(rendered) -> None:
    routes = {getattr(route, "path", None) for route in create_app(Settings()).routes}
    for overlay, docs in rendered.items():
        config = _config(docs)
        for name, pod in _pod_templates(docs).items():
            assert pod["automountServiceAccountToken"] is False and pod["securityContext"]["runAsNonRoot"], name
            for c in _containers(pod):
                sc = c["securityContext"]
                assert sc["runAsNonRoot"] and sc["readOnlyRootFilesystem"], (overlay, name, c["name"])
                assert sc["allowPrivilegeEscalation"] is False and sc["capabilities"]["drop"] == ["ALL"]
                assert {"cpu", "memory"} <= set(c["resources"]["limits"]), c["name"]
                writable = {m["mountPath"] for m in c.get("volumeMounts", []) if not m.get("readOnly")}
                assert "/tmp" in writable, c["name"]  # noqa: S108 - a read-only root needs a writable /tmp
        deployments = {d["metadata"]["name"]: d["spec"]["template"]["spec"]["containers"]
                       for d in _named(docs, "Deployment")}
        probes = {c["name"]: (c.get("livenessProbe"), c.get("readinessProbe"))
                  for containers in deployments.values() for c in containers}
        unprobed = {name for name, pair in probes.items() if None in pair}
        assert unprobed == {"health-evaluator"}  # no endpoint (see the checkov baseline)
        assert probes["api"][0]["httpGet"]["path"] == "/health" and "/health" in routes
        assert probes["console"][1]["httpGet"]["path"] == "/_stcore/health"
        sink = deployments["sink"][0]
        assert sink["livenessProbe"]["httpGet"]["port"] == "metrics"
        assert sink["ports"] == [{"name": "metrics", "containerPort": int(config["SINK_METRICS_PORT"])}]


def test_sink_scales_on_lag_up_to_the_partitions_and_the_web_tier_on_cpu(rendered) -> None:
    for overlay, docs in rendered.items():
        config = _config(docs)
        scaled = _one(docs, "ScaledObject", "sink")["spec"]
        (trigger,) = scaled["triggers"]
        assert trigger["type"] == "kafka" and int(trigger["metadata"]["lagThreshold"]) > 0
        assert scaled["scaleTargetRef"]["name"] == "sink" and scaled["minReplicaCount"] == 1
        assert scaled["maxReplicaCount"] == int(config["KAFKA_PARTITIONS"]), overlay
        assert trigger["metadata"]["bootstrapServers"] == config["KAFKA_BOOTSTRAP_SERVERS"], overlay
        assert trigger["metadata"]["consumerGroup"] == config["KAFKA_GROUP_ID"]
        assert trigger["metadata"]["topic"] == config["TELEMETRY_TOPIC"]
        assert "replicas" not in _one(docs, "Deployment", "sink")["spec"]  # KEDA owns the count
        for name in ("api", "console"):
            hpa = _one(docs, "HorizontalPodAutoscaler", name)["spec"]
            assert hpa["scaleTargetRef"]["name"] == name and hpa["metrics"][0]["resource"]["name"] == "cpu"
            assert "replicas" not in _one(docs, "Deployment", name)["spec"]
        assert {d["metadata"]["name"] for d in _named(docs, "PodDisruptionBudget")} == {"api", "console", "sink"}


def _policy_components(policy: dict[str, Any]) -> set[str]:
    selector = policy["spec"]["podSelector"]
    if selector.get("matchExpressions"):
        (expression,) = selector["matchExpressions"]
        return set(expression["values"])
    component = selector.get("matchLabels", {}).get("app.kubernetes.io/component")
    return {component} if component else APP_COMPONENTS


def _egress_ports(policy: dict[str, Any]) -> set[int]:
    return {p["port"] for rule in policy["spec"].get("egress", []) for p in rule.get("ports", [])}


def test_network_policies_deny_by_default_and_fence_the_database_and_kafka(rendered) -> None:
    for overlay, docs in rendered.items():
        policies = {p["metadata"]["name"]: p for p in _named(docs, "NetworkPolicy")}
        deny = policies["default-deny"]["spec"]
        assert deny["podSelector"] == {} and set(deny["policyTypes"]) == {"Ingress", "Egress"}
        assert "ingress" not in deny and "egress" not in deny
        reaching = {port: set().union(*(_policy_components(p) for p in policies.values() if port in _egress_ports(p)))
                    for port in (5432, 9092, 8088)}
        assert reaching[5432] == APP_COMPONENTS, overlay
        assert reaching[9092] == {"api", "console", "sink"}, overlay
        assert reaching[8088] == {"api", "console"}
        assert [p for p in policies.values() if 5432 in _egress_ports(p)] == [policies["database-egress"]]
        google = policies["google-apis-egress"]["spec"]["egress"][0]["to"][0]["ipBlock"]
        assert "10.0.0.0/8" in google["except"]  # the open HTTPS rule is no way around the private fences


def test_only_nginx_reaches_the_rtmp_callbacks(rendered) -> None:
    for docs in rendered.values():
        assert json.loads(_config(docs)["STREAMS_CALLBACK_ALLOWED_NETS"]) == []  # the public api refuses them
        pod = _one(docs, "Deployment", "nginx-rtmp")["spec"]["template"]["spec"]
        containers = {c["name"]: c for c in _containers(pod)}
        callbacks = containers["callbacks"]
        assert callbacks["args"] == ["api", "serve", "--host", "127.0.0.1", "--port", "8080"]
        env = {e["name"]: e.get("value") for e in callbacks["env"]}
        assert json.loads(env["STREAMS_CALLBACK_ALLOWED_NETS"]) == ["127.0.0.1/32"]
        render_args = containers["render-config"]["args"]
        assert render_args[render_args.index("--callback-url") + 1] == "http://127.0.0.1:8080"
        assert "ports" not in callbacks  # nothing outside the pod can reach it
        rtmp = _one(docs, "Service", "nginx-rtmp")["spec"]
        assert rtmp["type"] == "LoadBalancer" and rtmp["externalTrafficPolicy"] == "Local"
        assert rtmp["ports"] == [{"name": "rtmp", "port": 1935, "targetPort": "rtmp", "protocol": "TCP"}]


def test_secrets_come_from_secret_manager_and_none_is_committed(rendered) -> None:
    for docs in rendered.values():
        assert not _named(docs, "Secret")
        provider = _one(docs, "SecretProviderClass", "stream-platform-secrets")["spec"]
        assert provider["provider"] == "gcp"
        synced = {d["key"] for o in provider["secretObjects"] for d in o["data"]}
        wanted = yaml.safe_load(provider["parameters"]["secrets"])
        assert all(w["resourceName"].startswith("projects/my-gcp-project") for w in wanted)
        assert {d["objectName"] for o in provider["secretObjects"] for d in o["data"]} == {w["path"] for w in wanted}
        for name, pod in _pod_templates(docs).items():
            csi = [v for v in pod["volumes"] if "csi" in v]
            assert csi and csi[0]["csi"]["volumeAttributes"]["secretProviderClass"] == "stream-platform-secrets", name
            for c in _containers(pod):
                for env in c.get("env", []):
                    ref = env.get("valueFrom", {}).get("secretKeyRef")
                    if ref:
                        assert ref["name"] == "stream-platform-secrets" and ref["key"] in synced
                    assert env["name"] not in synced or ref, f"{name}/{c['name']}: {env['name']} set in plain text"
        assert not set(_config(docs)) & synced


def _findings(report: list[dict[str, Any]] | dict[str, Any]) -> list[tuple[str, str, str]]:
    reports = report if isinstance(report, list) else [report]
    return [(r["check_type"], f["check_id"], f["resource"]) for r in reports for f in r["results"]["failed_checks"]]


def test_checkov_finds_nothing_beyond_the_accepted_baseline(tmp_path: Path) -> None:
    if not CHECKOV.exists():
        pytest.skip(f"checkov is not installed at {CHECKOV}: `make test` installs it (its own venv)")
    for overlay in OVERLAYS:
        (tmp_path / "kubernetes").mkdir(exist_ok=True)
        (tmp_path / "kubernetes" / f"{overlay}.yaml").write_text(render(overlay))
    shutil.copytree(ROOT / "infrastructure" / "terraform", tmp_path / "terraform",
                    ignore=shutil.ignore_patterns(".terraform", "*.tfstate*"))
    shutil.copy(ROOT / "Dockerfile", tmp_path / "Dockerfile")
    started = time.monotonic()
    result = subprocess.run(
        [str(CHECKOV), "-d", str(tmp_path), "--framework", "kubernetes", "terraform", "dockerfile",
         "--skip-download", "--quiet", "--compact", "-o", "json"],
        capture_output=True, text=True, timeout=300, env={**os.environ, "BC_SKIP_MAPPING": "TRUE"})
    print(f"checkov took {time.monotonic() - started:.1f} s")
    assert result.returncode in (0, 1), result.stderr[-2000:]
    findings = _findings(json.loads(result.stdout))
    baseline = yaml.safe_load((ROOT / "infrastructure" / "checkov-baseline.yaml").read_text())["accepted"]
    assert all(len(entry["reason"].split()) >= 8 for entry in baseline), "every accepted finding needs its reason"

    def accepted(finding: tuple[str, str, str], entry: dict[str, str]) -> bool:
        framework, check, resource = finding
        return (entry["framework"], entry["check"]) == (framework, check) and fnmatch.fnmatch(resource,
                                                                                            entry["resource"])

    new = [f for f in findings if not any(accepted(f, e) for e in baseline)]
    stale = [e["check"] + " " + e["resource"] for e in baseline if not any(accepted(f, e) for f in findings)]
    assert not new, f"checkov findings not in infrastructure/checkov-baseline.yaml (fix, or accept with why): {new}"
    assert not stale, f"baseline entries that match no finding any more (remove them): {stale}"
