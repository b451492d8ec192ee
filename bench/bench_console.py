"""Console page-ready time in a real browser with a 256-GPU fleet (goal: Overview and GPU Health < 2 s).

Starts its own embedded PostgreSQL and tansu broker (or uses DATABASE_URL / KAFKA_BOOTSTRAP_SERVERS), stores 24 h of
simulated history for 32 hosts × 8 GPUs through the sink's writer, evaluates health, starts the console as the demo
does, signs in with Playwright on Debian Chromium and times, per page, the click on its navigation link until the
page's script (parallel fragments included) has finished and its heading shows. The cold open of the Overview is
the click on "Sign in" (password check included) with every data cache empty; the cold open of GPU Health follows
(empty caches, and the browser's first load of Plotly's bundle). The median and p95 are over later opens, each
from the Alerts page, within the caches' lifetime. The baseline in the same run is the Alerts page opened the same
way (one small query, one table): the ratio says what the fleet-wide queries and charts add to Streamlit's round
trip.

    .venv/bin/python bench/bench_console.py [--hosts 32] [--repeat 7] [--screenshots docs/screenshots]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from cryptography.fernet import Fernet
from playwright.sync_api import Page, sync_playwright
from pydantic import SecretStr

from backend.config import Settings
from backend.db import connect
from backend.demo import DemoStack, console_component, store_history, wait_until_healthy
from backend.embedded.ports import free_port
from backend.identity import users
from backend.identity.principal import SYSTEM, Principal, Role

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
READY = '[data-testid="stApp"][data-test-script-state="notRunning"]'
ADMIN, PASSWORD = "bench-admin", "bench-password-123"
TIMED = ("Overview", "GPU Health")
BASELINE = "Alerts"
SCREENSHOTS = ("Overview", "GPU Health", "GPU Detail", "Alerts", "Costs", "Streams", "VMs", "Pipeline", "Secrets")


def timed(action: Callable[[], None]) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def open_page(page: Page, title: str) -> None:
    page.locator('[data-testid="stSidebarNav"] a').filter(has_text=title).click()
    page.get_by_role("heading", name=title, exact=True).wait_for()
    page.wait_for_selector(READY)


def critical_gpu(settings: Settings) -> str:
    """The GPU Detail picker's label of the first critical GPU (host · GPU index · model)."""
    with connect(settings) as conn:
        row = conn.execute("SELECT host, gpu_index, model FROM gpu_health WHERE status = 'critical' "
                           "ORDER BY host, gpu_index LIMIT 1").fetchone()
    return f"{row['host']} · GPU {row['gpu_index']} · {row['model']}" if row else ""


def choose(page: Page, label: str, option: str) -> None:
    """Pick an option of a Streamlit selectbox by typing it."""
    if not option:
        return
    page.get_by_role("combobox", name=label).click()
    page.keyboard.type(option)
    page.get_by_role("option", name=option).click()
    page.wait_for_timeout(500)
    page.wait_for_selector(READY)


def seed(settings: Settings, hosts: int) -> tuple[int, float]:
    """The fleet's history, health, an admin, a stream key and a secret (so every page has something to show)."""
    from backend.health.evaluator import evaluate_once
    from backend.health.risk.predict import predict_fleet
    from backend.health.risk.training import FleetSpec, train_and_evaluate
    from backend.secrets.service import get_service
    from backend.streams import keys
    from backend.streams.pepper import key_pepper
    from backend.vm.agent import build_agent

    started = time.perf_counter()
    stored = store_history(settings, hosts=hosts, gpus_per_host=8, history=timedelta(hours=24),
                           interval=timedelta(seconds=60))
    seconds = time.perf_counter() - started
    evaluate_once(settings)
    admin = Principal(ADMIN, Role.admin)
    with connect(settings) as conn:
        users.add_user(conn, SYSTEM, ADMIN, Role.admin, PASSWORD)
        keys.create_key(conn, admin, key_pepper(settings), "studio-1", owner="news")
    get_service(settings).create(admin, "ingest-api-token", value="demo-token-value")
    build_agent(settings).evaluate()  # one auto-shutdown evaluation of this host, for the VMs page
    models = settings.health_model_dir
    train_and_evaluate(train_seeds=[1, 2, 3, 4], test_seeds=[5, 6], horizon_h=24, out_dir=models,
                       spec=FleetSpec(hours=24))
    predict_fleet(settings, model_dir=models)  # failure risk for GPU Detail
    return stored, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=32, help="hosts of 8 GPUs (32 → 256 GPUs)")
    parser.add_argument("--repeat", type=int, default=7, help="timed opens per page")
    parser.add_argument("--screenshots", type=Path, help="also save a screenshot of every page here")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="bench-console-"))
    secrets_key = Fernet.generate_key().decode()  # the local secrets store opens only with a configured key
    stack = DemoStack(workdir, settings=Settings(database_url=os.environ.get("DATABASE_URL"),
                                                 kafka_bootstrap_servers=os.environ.get("KAFKA_BOOTSTRAP_SERVERS"),
                                                 secrets_local_path=workdir / "secrets.json",
                                                 secrets_local_key=SecretStr(secrets_key),
                                                 health_model_dir=workdir / "models"))
    try:
        settings = stack.start_infrastructure()
        stack.env.update(SECRETS_LOCAL_PATH=str(workdir / "secrets.json"), SECRETS_LOCAL_KEY=secrets_key,
                         SECRETS_ENV_FILE="/nonexistent")
        stored, seed_s = seed(settings, args.hosts)
        print(f"stored {stored:,} samples for {args.hosts * 8} GPUs in {seed_s:.1f} s")
        port = free_port()
        stack.spawn(console_component(port))
        url = f"http://127.0.0.1:{port}"
        wait_until_healthy(url)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1440, "height": 1000})
            page.set_default_timeout(120_000)
            page.goto(url)
            page.get_by_role("button", name="Sign in").wait_for()
            page.wait_for_selector(READY)
            page.wait_for_timeout(3000)  # the console's warm-up imports the backend areas meanwhile
            page.get_by_role("textbox", name="User name").fill(ADMIN)
            page.get_by_role("textbox", name="Password").fill(PASSWORD)

            def sign_in() -> None:
                page.get_by_role("button", name="Sign in").click()
                page.get_by_role("heading", name="Overview", exact=True).wait_for()
                page.wait_for_selector(READY)

            cold = {"Overview": timed(sign_in), "GPU Health": timed(lambda: open_page(page, "GPU Health"))}
            if args.screenshots:  # while the fleet's samples are fresh (statuses turn unknown after 2 min)
                args.screenshots.mkdir(parents=True, exist_ok=True)
                page.set_viewport_size({"width": 1440, "height": 2000})  # the app scrolls inside: show more of it
                for title in SCREENSHOTS:
                    open_page(page, title)
                    if title == "GPU Detail":  # show a GPU with something to say: the first critical one
                        choose(page, "GPU", critical_gpu(settings))
                    page.wait_for_timeout(1500)  # let Plotly finish drawing
                    page.screenshot(path=args.screenshots / f"{title.lower().replace(' ', '_')}.png")
                page.set_viewport_size({"width": 1440, "height": 1000})
            warm: dict[str, list[float]] = {title: [] for title in (*TIMED, BASELINE)}
            for _ in range(args.repeat):
                for title in (*TIMED, BASELINE):
                    open_page(page, "Streams" if title == BASELINE else BASELINE)
                    warm[title].append(timed(lambda t=title: open_page(page, t)))
            browser.close()
    finally:
        stack.stop()
        shutil.rmtree(workdir, ignore_errors=True)

    base = statistics.median(warm[BASELINE])
    print(f"\n{args.hosts * 8} GPUs, {stored:,} samples (24 h at 60 s); {args.repeat} timed opens per page")
    print(f"{'page':<14}{'cold open s':>12}{'median s':>10}{'p95 s':>8}{'× Alerts':>10}")
    for title in (BASELINE, *TIMED):
        values = sorted(warm[title])
        p95 = values[min(len(values) - 1, round(0.95 * (len(values) - 1)))]
        first = f"{cold[title]:.2f}" if title in cold else "–"
        print(f"{title:<14}{first:>12}{statistics.median(values):>10.2f}{p95:>8.2f}"
              f"{statistics.median(values) / base:>10.1f}")


if __name__ == "__main__":
    main()
