"""Console page-ready time in a real browser with a 256-GPU fleet (goal: Overview and GPU Health < 2 s, cold too).

Starts its own embedded PostgreSQL and tansu broker (or uses DATABASE_URL / KAFKA_BOOTSTRAP_SERVERS), stores 24 h of
simulated history for 32 hosts × 8 GPUs through the sink's writer, evaluates health, then measures in Debian
Chromium driven by Playwright:

- cold, `--cold` times: a console process started just now (every data cache empty, as right after `make demo`
  starts) and a fresh browser (Plotly's bundle not cached); the Overview is timed from the click on "Sign in"
  (password check included) until its script (parallel fragments included) has finished, then GPU Health from the
  click on its navigation link. The console is stopped after each round.
- warm, `--repeat` times in the last console: each page opened from the Alerts page within the caches' lifetime.

The baseline in the same run is the Alerts page opened the same way (one small query, one table): the ratio says
what the fleet-wide queries and charts add to Streamlit's round trip. Screenshots: bench/screenshots.py.

    .venv/bin/python bench/bench_console.py [--hosts 32] [--cold 5] [--repeat 5]
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

from console_browser import chromium, open_page, sign_in, sign_in_form
from cryptography.fernet import Fernet
from playwright.sync_api import Browser, Page
from pydantic import SecretStr

from backend.config import Settings
from backend.db import connect
from backend.demo import DemoStack, console_component, stop_process_group, store_history, wait_until_healthy
from backend.embedded.ports import free_port
from backend.identity import users
from backend.identity.principal import SYSTEM, Principal, Role

ADMIN, PASSWORD = "bench-admin", "bench-password-123"
TIMED = ("Overview", "GPU Health")
BASELINE = "Alerts"
TYPING_S = 3.0
"""Between the sign-in form showing and the click: a person types a name and a password meanwhile (and the console
imports the backend areas in the background)."""


def timed(action: Callable[[], None]) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def seed(settings: Settings, hosts: int) -> tuple[int, float]:
    """The fleet's history, health, an admin, a stream key and a secret (so every page has something to show)."""
    from backend.health.evaluator import evaluate_once
    from backend.health.risk.predict import predict_fleet
    from backend.health.risk.training import FleetSpec, train_and_evaluate
    from backend.secrets.service import get_service
    from backend.streams import keys
    from backend.streams.pepper import key_pepper
    from backend.telemetry.sink.rollup_worker import materialize
    from backend.vm.agent import build_agent

    started = time.perf_counter()
    stored = store_history(settings, hosts=hosts, gpus_per_host=8, history=timedelta(hours=24),
                           interval=timedelta(seconds=60))
    seconds = time.perf_counter() - started
    materialize(settings)  # the pending rollups and precomputed GPU-minutes, as a running sink's worker keeps them
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


def cold_round(stack: DemoStack, browser: Browser, keep: bool) -> tuple[dict[str, float], Page | None]:
    """A console started now and a fresh browser context: the Overview from "Sign in", then GPU Health. With
    `keep`, the console and the signed-in page stay for the warm opens."""
    port = free_port()
    child = stack.spawn(console_component(port))
    url = f"http://127.0.0.1:{port}"
    wait_until_healthy(url)
    context = browser.new_context(viewport={"width": 1440, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(120_000)
    sign_in_form(page, url, ADMIN, PASSWORD)
    page.wait_for_timeout(TYPING_S * 1000)
    times = {"Overview": timed(lambda: sign_in(page)), "GPU Health": timed(lambda: open_page(page, "GPU Health"))}
    if keep:
        return times, page
    context.close()
    if child is not None:
        stop_process_group(child.process, 10)
        stack.children.remove(child)
    return times, None


def warm_opens(page: Page, repeat: int) -> dict[str, list[float]]:
    """Each timed page and the baseline opened `repeat` times from another page, in the kept console."""
    warm: dict[str, list[float]] = {title: [] for title in (*TIMED, BASELINE)}
    for _ in range(repeat):
        for title in (*TIMED, BASELINE):
            open_page(page, "Streams" if title == BASELINE else BASELINE)
            warm[title].append(timed(lambda t=title: open_page(page, t)))
    return warm


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=32, help="hosts of 8 GPUs (32 → 256 GPUs)")
    parser.add_argument("--cold", type=int, default=5, help="cold rounds, each with a console started for it")
    parser.add_argument("--repeat", type=int, default=5, help="warm opens per page")
    args = parser.parse_args()
    if args.cold < 1:
        parser.error("--cold must be at least 1 (the last cold round's console is the warm one)")

    workdir = Path(tempfile.mkdtemp(prefix="bench-console-"))
    secrets_key = Fernet.generate_key().decode()  # the local secrets store opens only with a configured key
    stack = DemoStack(workdir, settings=Settings(database_url=os.environ.get("DATABASE_URL"),
                                                 kafka_bootstrap_servers=os.environ.get("KAFKA_BOOTSTRAP_SERVERS"),
                                                 secrets_local_path=workdir / "secrets.json",
                                                 secrets_local_key=SecretStr(secrets_key),
                                                 health_model_dir=workdir / "models"))
    cold: dict[str, list[float]] = {title: [] for title in TIMED}
    try:
        settings = stack.start_infrastructure()
        stack.env.update(SECRETS_LOCAL_PATH=str(workdir / "secrets.json"), SECRETS_LOCAL_KEY=secrets_key,
                         SECRETS_ENV_FILE="/nonexistent")
        stored, seed_s = seed(settings, args.hosts)
        print(f"stored {stored:,} samples for {args.hosts * 8} GPUs in {seed_s:.1f} s")
        with chromium() as browser:
            for n in range(args.cold):
                times, kept = cold_round(stack, browser, keep=n == args.cold - 1)
                for title, seconds in times.items():
                    cold[title].append(seconds)
                print(f"cold round {n + 1}: " + ", ".join(f"{t} {s:.2f} s" for t, s in times.items()))
            assert kept is not None
            warm = warm_opens(kept, args.repeat)
    finally:
        stack.stop()
        shutil.rmtree(workdir, ignore_errors=True)

    base = statistics.median(warm[BASELINE])
    print(f"\n{args.hosts * 8} GPUs, {stored:,} samples (24 h at 60 s); {args.cold} cold rounds, "
          f"{args.repeat} warm opens per page")
    print(f"{'page':<14}{'cold median s':>14}{'cold max s':>11}{'warm median s':>14}{'warm max s':>11}{'× Alerts':>10}")
    for title in (BASELINE, *TIMED):
        first = cold.get(title)
        cold_cols = f"{statistics.median(first):>14.2f}{max(first):>11.2f}" if first else f"{'–':>14}{'–':>11}"
        print(f"{title:<14}{cold_cols}{statistics.median(warm[title]):>14.2f}{max(warm[title]):>11.2f}"
              f"{statistics.median(warm[title]) / base:>10.1f}")


if __name__ == "__main__":
    main()
