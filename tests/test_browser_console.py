"""The console in a real browser (Debian Chromium via Playwright) against a demo-like stack.

One Streamlit server for the module, started the way `make demo` starts it, on a free loopback port, against its
own migrated database filled with a simulated fleet, and the session's Kafka-compatible broker.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from backend.config import Settings
from backend.db import connect
from backend.demo import DemoStack, console_component, store_history, wait_until_healthy
from backend.embedded.ports import free_port
from backend.health.evaluator import evaluate_once
from backend.identity import users
from backend.identity.principal import SYSTEM, Role
from backend.messaging.kafka import ensure_topics

playwright = pytest.importorskip("playwright.sync_api")
pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
READY = '[data-testid="stApp"][data-test-script-state="notRunning"]'
PROBLEMS = '[data-testid="stException"], [data-testid="stAlertContentError"]'
ADMIN, PASSWORD = "alice", "correct-horse-battery"
PAGES = ("Overview", "GPU Health", "GPU Detail", "Alerts", "Costs", "Streams", "VMs", "Pipeline", "Secrets")


@pytest.fixture(scope="module")
def console_url(pg_admin_url: str, template_database: str, kafka_bootstrap: str,
                tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian chromium is not installed (make system-deps)")
    name = f"browser_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(name),
                                                                      sql.Identifier(template_database)))
    workdir = tmp_path_factory.mktemp("console")
    suffix = uuid.uuid4().hex[:8]
    env = {
        "DATABASE_URL": psycopg.conninfo.make_conninfo(pg_admin_url, dbname=name),
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "KAFKA_PARTITIONS": "2",
        "TELEMETRY_TOPIC": f"gpu.metrics.v1.{suffix}", "TOKEN_USAGE_TOPIC": f"token.usage.v1.{suffix}",
        "DLQ_TOPIC": f"telemetry.dlq.{suffix}", "KAFKA_GROUP_ID": f"telemetry-sink.{suffix}",
        "SECRETS_LOCAL_PATH": str(workdir / "secrets.json"), "SECRETS_ENV_FILE": "/nonexistent/secrets.env",
    }
    settings = Settings(**{k.lower(): v for k, v in env.items() if k != "SECRETS_ENV_FILE"})
    ensure_topics([settings.telemetry_topic, settings.token_usage_topic, settings.dlq_topic], settings)
    store_history(settings, hosts=2, gpus_per_host=8, history=timedelta(hours=2), interval=timedelta(minutes=1))
    evaluate_once(settings)
    with connect(settings) as conn:
        users.add_user(conn, SYSTEM, ADMIN, Role.admin, PASSWORD)
    port = free_port()
    stack = DemoStack(workdir, settings=settings, env=env)
    stack.spawn(console_component(port))
    try:
        wait_until_healthy(f"http://127.0.0.1:{port}")
        yield f"http://127.0.0.1:{port}"
    finally:
        stack.stop()
        with psycopg.connect(pg_admin_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    with playwright.sync_playwright() as p:
        launched = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def page(browser, console_url: str):  # type: ignore[no-untyped-def]
    """A fresh browser session signed in as the admin."""
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    tab = context.new_page()
    tab.set_default_timeout(60_000)
    tab.goto(console_url)
    tab.wait_for_selector(READY)
    tab.get_by_role("textbox", name="User name").fill(ADMIN)
    tab.get_by_role("textbox", name="Password").fill(PASSWORD)
    tab.get_by_role("button", name="Sign in").click()
    tab.wait_for_selector('[data-testid="stSidebarNav"]')
    yield tab
    context.close()


def _open(page, title: str) -> None:  # type: ignore[no-untyped-def]
    page.locator('[data-testid="stSidebarNav"] a').filter(has_text=title).click()
    page.get_by_role("heading", name=title, exact=True).wait_for()
    page.wait_for_selector(READY)


def _submit(page, button, outcome) -> None:  # type: ignore[no-untyped-def]
    """Click a form's submit button and wait for its outcome; a message box instead fails at once with its text.

    A click that lands while one of the page's auto-refreshing fragments reruns can be lost on a loaded machine
    (the form stays filled and nothing answers), so a click with no answer at all within 20 s is made once more,
    as a user would.
    """
    answered = outcome.or_(page.locator(f'{PROBLEMS}, [data-testid="stAlertContentWarning"]')).first
    button.click()
    try:
        answered.wait_for(timeout=20_000)
    except playwright.TimeoutError:
        button.click()
        answered.wait_for()
    assert outcome.is_visible(), f"the form answered with a message: {answered.inner_text()}"


def test_every_page_opens_without_an_error_element(page) -> None:  # type: ignore[no-untyped-def]
    for title in PAGES:
        _open(page, title)
        problems = [p.inner_text() for p in page.locator(PROBLEMS).all()]
        assert not problems, f"{title}: {problems}"
    assert "Traceback" not in page.content()


def test_create_a_stream_key_shows_it_once(page) -> None:  # type: ignore[no-untyped-def]
    _open(page, "Streams")
    page.get_by_text("Create a stream key").click()
    page.get_by_role("textbox", name="Stream name").fill("browser-cam")
    shown = page.locator('[data-testid="stCode"]').first
    _submit(page, page.get_by_role("button", name="Create key"), shown)
    key = shown.inner_text().strip()
    assert len(key) >= 32
    assert page.get_by_text("for live/browser-cam").count() == 1
    _open(page, "Overview")
    _open(page, "Streams")
    assert key not in page.content(), "the key is shown once, then never again"


def test_admin_creates_and_reveals_a_secret(page) -> None:  # type: ignore[no-untyped-def]
    _open(page, "Secrets")
    page.get_by_text("Create a secret").click()
    page.get_by_role("textbox", name="Name", exact=True).fill("browser-secret")
    page.get_by_role("textbox", name="Value", exact=True).fill("s3cr3t-from-the-browser")
    _submit(page, page.get_by_role("button", name="Create", exact=True),
            page.get_by_text("created secret browser-secret"))
    assert "s3cr3t-from-the-browser" not in page.content()

    page.get_by_role("button", name="Reveal value").click()
    page.locator('[data-testid="stCode"]').filter(has_text="s3cr3t-from-the-browser").wait_for()
    assert not page.locator(PROBLEMS).count()
