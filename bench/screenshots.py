"""Screenshots of every console page from a running console (the ones in docs/screenshots/ come from `make demo`).

    make demo    # in another terminal: it prints the URL and the login
    CONSOLE_PASSWORD=… .venv/bin/python bench/screenshots.py http://127.0.0.1:8501 --user admin [--out docs/screenshots]

The password is read from CONSOLE_PASSWORD (or asked for), never from the command line.
"""

from __future__ import annotations

import argparse
import getpass
import os
from pathlib import Path

from console_browser import PAGES, chromium, open_page, sign_in, sign_in_form


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url", help="the console's URL, as `make demo` prints it")
    parser.add_argument("--user", default="admin")
    parser.add_argument("--out", type=Path, default=Path("docs/screenshots"))
    args = parser.parse_args()
    password = os.environ.get("CONSOLE_PASSWORD") or getpass.getpass(f"password of {args.user}: ")
    args.out.mkdir(parents=True, exist_ok=True)
    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1440, "height": 2000})  # the app scrolls inside: show more of it
        page.set_default_timeout(120_000)
        sign_in_form(page, args.url, args.user, password)
        sign_in(page)
        for title in PAGES:
            open_page(page, title)
            page.wait_for_timeout(2000)  # let Plotly finish drawing
            target = args.out / f"{title.lower().replace(' ', '_')}.png"
            page.screenshot(path=target)
            print(f"{title}: {target}")


if __name__ == "__main__":
    main()
