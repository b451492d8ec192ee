"""Smoke test of the production stack through its containers, from outside: published loopback ports, `docker
compose exec`, the engine's API and a headless browser. The tests share one stack and run in file order."""

from __future__ import annotations

import io
import json
import socket
import subprocess
import tarfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import docker
import httpx
import pytest

from tests.rehearsal.engine import Engine
from tests.rehearsal.images import Images
from tests.rehearsal.report import REPORT
from tests.rehearsal.stack import JOBS, Stack
from tests.startup_vm import FakeVm, docker_run_args, run_startup
from tests.test_browser_console import CHROMIUM, CHROMIUM_ARGS, PAGES, PROBLEMS, READY

playwright = pytest.importorskip("playwright.sync_api")
pytestmark = [pytest.mark.rehearsal, pytest.mark.timeout(1800)]

FFMPEG = "/usr/bin/ffmpeg"
STREAM = "rehearsal-cam"
SECRET_NAMES = ("PASSWORD", "SECRET", "TOKEN", "PEPPER", "KEY")


def _eventually(check: Callable[[], Any], what: str, timeout: float = 90, every: float = 2) -> Any:
    """The first truthy result of `check` within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:.0f}s")
        time.sleep(every)


@pytest.fixture(scope="module")
def api_token(stack: Stack) -> str:
    out = stack.cli("api", "tokens", "create", "--role", "operator", "--name", "rehearsal")
    return out.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def api(stack: Stack, api_token: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"http://127.0.0.1:{stack.ports['api']}",
                      headers={"Authorization": f"Bearer {api_token}"}, timeout=30) as client:
        yield client


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with playwright.sync_playwright() as p:
        launched = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def console(browser: Any, stack: Stack) -> Iterator[Any]:
    """A browser tab signed in to the console container as the first admin, with ADMIN_PASSWORD."""
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    tab = context.new_page()
    tab.set_default_timeout(60_000)
    tab.goto(f"http://127.0.0.1:{stack.ports['console']}")
    tab.wait_for_selector(READY)
    tab.get_by_role("textbox", name="User name").fill("admin")
    tab.get_by_role("textbox", name="Password").fill(stack.secrets["ADMIN_PASSWORD"])
    tab.get_by_role("button", name="Sign in").click()
    tab.wait_for_selector('[data-testid="stSidebarNav"]')
    yield tab
    context.close()


def _open(page: Any, title: str) -> None:
    page.locator('[data-testid="stSidebarNav"] a').filter(has_text=title).click()
    page.get_by_role("heading", name=title, exact=True).wait_for()
    page.wait_for_selector(READY)


def _publish(stack: Stack, query: str, seconds: int) -> subprocess.Popen[bytes]:
    url = f"rtmp://127.0.0.1:{stack.ports['rtmp']}/live/{STREAM}{query}"
    return subprocess.Popen(
        [FFMPEG, "-nostdin", "-loglevel", "error", "-re", "-f", "lavfi", "-i", "testsrc=size=320x240:rate=15",
         "-f", "lavfi", "-i", "sine", "-t", str(seconds), "-c:v", "libx264", "-preset", "ultrafast", "-g", "15",
         "-c:a", "aac", "-f", "flv", url], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _stat(stack: Stack) -> str:
    """nginx-rtmp's /stat, asked inside its container (stat and control are never published)."""
    return stack.exec("nginx-rtmp", "curl", "-fsS", "http://127.0.0.1:8088/stat")


def _is_live(stack: Stack) -> bool:
    return f"<name>{STREAM}</name>" in _stat(stack)


# --- the stack came up as the production file says --------------------------------------------------------------

def test_every_service_is_healthy_and_the_jobs_finished(stack: Stack) -> None:
    states = {row["Service"]: row for row in stack.ps()}
    for job in JOBS:
        assert states[job]["State"] == "exited" and states[job]["ExitCode"] == 0, states[job]
    services = set(states) - set(JOBS)
    assert services >= {"timescaledb", "kafka", "api", "console", "sink", "health-evaluator", "nginx-rtmp",
                        "simulator"}
    for name in services:
        assert states[name]["State"] == "running", states[name]
        assert states[name]["Health"] in ("healthy", ""), states[name]
    assert all(states[name]["Health"] == "healthy" for name in ("timescaledb", "kafka", "api", "console", "sink",
                                                               "nginx-rtmp"))


def test_the_migrate_job_created_the_first_admin_from_admin_password(stack: Stack) -> None:
    users = json.loads(stack.cli("users", "list", "--json"))
    assert [(u["name"], u["role"]) for u in users] == [("admin", "admin")]
    log = stack.compose("logs", "--no-color", "migrate").stdout
    assert "created the first admin 'admin' from ADMIN_PASSWORD" in log
    assert stack.secrets["ADMIN_PASSWORD"] not in log


def test_app_and_nginx_run_as_unprivileged_users(stack: Stack, docker_engine: Engine, images: Images) -> None:
    for service in ("api", "console", "sink", "nginx-rtmp"):
        assert stack.exec(service, "id", "-u").strip() != "0", service
    client = docker.DockerClient(base_url=docker_engine.host)
    try:
        for tag in (images.app, images.nginx):
            user = client.images.get(tag).attrs["Config"]["User"]
            assert user and user.split(":")[0] not in ("root", "0"), (tag, user)
        nginx = client.containers.get(stack.container("nginx-rtmp"))
        processes = nginx.top(ps_args="-eo pid,user,comm")["Processes"]
        assert processes and all(user not in ("root", "0") for _, user, _ in processes), processes
    finally:
        client.close()


def _layer_names(client: docker.DockerClient, tag: str) -> Iterator[tuple[str, bytes]]:
    """(path, content of small files) of every file in every layer of an image, streamed from `docker save`."""
    stream = io.BufferedReader(_Chunks(client.images.get(tag).save(chunk_size=1 << 20)), buffer_size=1 << 20)
    with tarfile.open(fileobj=stream, mode="r|") as outer:
        for member in outer:
            if not member.name.endswith("layer.tar"):
                continue
            with tarfile.open(fileobj=outer.extractfile(member), mode="r|") as layer:
                for entry in layer:
                    small = entry.isfile() and entry.size <= 65536
                    content = layer.extractfile(entry).read() if small else b""  # type: ignore[union-attr]
                    yield entry.name, content


class _Chunks(io.RawIOBase):
    """A file object over an iterator of byte chunks."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks, self._left = chunks, b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._left:
            self._left = next(self._chunks, b"")
            if not self._left:
                return 0
        size = min(len(buffer), len(self._left))
        buffer[:size], self._left = self._left[:size], self._left[size:]
        return size


def test_no_secret_is_in_an_image_layer_or_the_image_environment(stack: Stack, docker_engine: Engine,
                                                                  images: Images) -> None:
    values = [value.encode() for value in stack.secrets.values()]
    client = docker.DockerClient(base_url=docker_engine.host, timeout=600)
    try:
        for tag in (images.app, images.nginx):
            attrs = client.images.get(tag).attrs
            env = dict(item.split("=", 1) for item in attrs["Config"]["Env"] or [])
            assert not [n for n in env if any(word in n for word in SECRET_NAMES) and n != "SECRETS_ENV_FILE"], env
            history = json.dumps(client.api.history(tag))
            assert not [v for v in values if v.decode() in history]
            for path, content in _layer_names(client, tag):
                name = path.rsplit("/", 1)[-1]
                assert name != "secrets.env" and not path.startswith(("app/.data/", "src/.data/")), (tag, path)
                assert not any(value in content for value in values), (tag, path)
    finally:
        client.close()


# --- telemetry: simulator container → Kafka → sink → database → API -----------------------------------------------

def test_simulated_telemetry_reaches_the_database_and_the_api(stack: Stack, api: httpx.Client) -> None:
    rows = _eventually(lambda: int(stack.sql("SELECT count(*) FROM gpu_metrics") or 0), "telemetry rows", 120)
    assert rows > 0

    def gpus() -> list[dict[str, Any]]:
        response = api.get("/api/v1/gpus", params={"limit": 100})
        assert response.status_code == 200, response.text
        return response.json()["items"]

    listed = _eventually(lambda: len(gpus()) >= 32 and gpus(), "32 simulated GPUs in /api/v1/gpus", 120)
    assert len({g["host"] for g in listed}) == 4


# --- RTMP: ffmpeg on the host → nginx-rtmp container → callbacks to the api container -----------------------------

def test_publishing_without_a_key_is_refused(stack: Stack) -> None:
    publisher = _publish(stack, "", seconds=5)
    assert publisher.wait(timeout=60) != 0
    assert not _is_live(stack)


def test_a_key_made_in_the_api_container_publishes_shows_live_and_revoking_kicks(stack: Stack, console: Any) -> None:
    issued = json.loads(stack.cli("streams", "keys", "create", STREAM, "--json"))
    publisher = _publish(stack, f"?key={issued['key']}", seconds=300)
    try:
        _eventually(lambda: _is_live(stack), f"{STREAM} in /stat", 60)
        _open(console, "Streams")
        assert console.get_by_text("Live now").is_visible()
        _eventually(lambda: console.locator('[data-testid="stMetricValue"]').first.inner_text().strip() == "1",
                    "Live now: 1 on the Streams page", 40)
        kick = console.locator('[data-testid="stSelectbox"]').filter(has_text="Stream to kick").inner_html()
        assert f"live/{STREAM}" in kick, kick

        stack.cli("streams", "keys", "revoke", issued["id"])
        assert publisher.wait(timeout=60) is not None
        _eventually(lambda: not _is_live(stack), f"{STREAM} gone from /stat", 30)
    finally:
        if publisher.poll() is None:
            publisher.kill()
            publisher.wait()


# --- the console -------------------------------------------------------------------------------------------------

def test_the_console_signs_in_and_opens_every_page_without_an_error(console: Any) -> None:
    for title in PAGES:
        _open(console, title)
        problems = [p.inner_text() for p in console.locator(PROBLEMS).all()]
        assert not problems, f"{title}: {problems}"
    assert "Traceback" not in console.content()


def test_the_containers_view_lists_the_stack_and_restarts_one_audited(stack: Stack, console: Any,
                                                                      api: httpx.Client,
                                                                      docker_engine: Engine) -> None:
    listed = {c["name"]: c for c in api.get("/api/v1/containers").raise_for_status().json()}
    assert listed[stack.container("api")]["health"] == "healthy"
    assert listed[stack.container("migrate")]["status"] == "exited"

    target = stack.container("health-evaluator")
    client = docker.DockerClient(base_url=docker_engine.host)
    try:
        before = client.containers.get(target).attrs["State"]["StartedAt"]
        _open(console, "VMs")
        assert not console.get_by_text("Docker engine not reachable").count()
        box = console.locator('[data-testid="stSelectbox"]').filter(has_text="Container")
        box.click()
        console.keyboard.type(target)
        console.keyboard.press("Enter")
        console.get_by_role("button", name="Restart").click()
        console.get_by_text(f"Restarted {target}.").wait_for()
        after = client.containers.get(target).attrs["State"]["StartedAt"]
    finally:
        client.close()
    assert after != before
    audited = stack.sql("SELECT actor || ' ' || outcome FROM audit_log WHERE area = 'vm' "
                        f"AND action = 'container.restart' AND target = '{target}'")
    assert audited == "admin ok"


# --- state survives `docker compose down` (without -v) and `up` ------------------------------------------------

def test_users_keys_secrets_and_telemetry_survive_down_and_up(stack: Stack) -> None:
    stack.cli("secrets", "create", "rehearsal-secret", input="kept across restarts\n")
    keys_before = {k["id"] for k in json.loads(stack.cli("streams", "keys", "list", "--all", "--json"))}
    rows_before = int(stack.sql("SELECT count(*) FROM gpu_metrics"))
    assert keys_before and rows_before > 0

    stack.down(volumes=False)
    REPORT["down_then_up_to_healthy_s"] = round(stack.up(), 1)

    assert [u["name"] for u in json.loads(stack.cli("users", "list", "--json"))] == ["admin"]
    assert {k["id"] for k in json.loads(stack.cli("streams", "keys", "list", "--all", "--json"))} == keys_before
    assert stack.cli("secrets", "reveal", "rehearsal-secret").strip() == "kept across restarts"
    assert int(stack.sql("SELECT count(*) FROM gpu_metrics")) >= rows_before


def test_idle_memory_of_each_service_is_measured(stack: Stack, docker_engine: Engine) -> None:
    """The RSS of every process in each running container once the stack has settled (docs/deploy.md)."""
    time.sleep(20)
    client = docker.DockerClient(base_url=docker_engine.host)
    try:
        rss_mb = {}
        for row in stack.ps():
            if row["State"] != "running":
                continue
            processes = client.containers.get(row["Name"]).top(ps_args="-eo pid,rss")["Processes"]
            rss_mb[row["Service"]] = round(sum(int(rss) for _, rss in processes) / 1024, 1)
    finally:
        client.close()
    REPORT["idle_rss_mb"] = dict(sorted(rss_mb.items()))
    assert set(rss_mb) >= {"api", "console", "sink", "nginx-rtmp", "timescaledb", "kafka"}
    assert all(0 < mb < 2048 for mb in rss_mb.values()), rss_mb


def test_the_collector_unit_gives_its_container_the_vms_hostname(docker_engine: Engine, images: Images,
                                                                 tmp_path: Path) -> None:
    """Defect 5 on a real engine: with the `docker run` options startup.sh writes into the collector's unit, the
    process in the container sees this host's hostname (the agent's); without them it sees the container id."""
    options = docker_run_args(run_startup(FakeVm(secrets={}), tmp_path).units["stream-platform-collector"])
    without_gpus = [w for i, w in enumerate(options) if w != "--gpus" and (i == 0 or options[i - 1] != "--gpus")]
    probe = ["--entrypoint", "python", images.app, "-c", "import socket; print(socket.gethostname())"]
    seen = docker_engine.docker("run", "--rm", *without_gpus, *probe).stdout.decode().strip()
    assert seen == socket.gethostname()
    isolated = docker_engine.docker("run", "--rm", "--network", "none", *probe).stdout.decode().strip()
    assert isolated != socket.gethostname()

