"""Driving the console in Debian Chromium with Playwright: what the console benchmark and the screenshots share."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from playwright.sync_api import Browser, Page, sync_playwright

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
READY = '[data-testid="stApp"][data-test-script-state="notRunning"]'
PAGES = ("Overview", "GPU Health", "GPU Detail", "Alerts", "Costs", "Streams", "VMs", "Pipeline", "Secrets")


@contextmanager
def chromium() -> Iterator[Browser]:
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def sign_in_form(page: Page, url: str, user: str, password: str) -> None:
    """Open the console and fill the sign-in form, leaving the click on "Sign in" to the caller (it is timed)."""
    page.goto(url)
    page.get_by_role("button", name="Sign in").wait_for()
    page.wait_for_selector(READY)
    page.get_by_role("textbox", name="User name").fill(user)
    page.get_by_role("textbox", name="Password").fill(password)


def sign_in(page: Page) -> None:
    """Click "Sign in" and wait until the landing page (the Overview) has finished its script."""
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("heading", name="Overview", exact=True).wait_for()
    page.wait_for_selector(READY)


def open_page(page: Page, title: str) -> None:
    """Click a navigation link and wait until the page's heading shows and its script (fragments included) ends."""
    page.locator('[data-testid="stSidebarNav"] a').filter(has_text=title).click()
    page.get_by_role("heading", name=title, exact=True).wait_for()
    page.wait_for_selector(READY)

