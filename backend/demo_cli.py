"""`stream-platform demo`: the embedded stack and the console in the foreground (what `make demo` runs)."""

from __future__ import annotations

from pathlib import Path

import typer

from backend import demo
from backend.cli_support import console, friendly_errors

app = typer.Typer(help="Run the whole platform locally: embedded PostgreSQL and Kafka, pipeline, API, console.",
                  invoke_without_command=True)


@app.callback()
@friendly_errors
def run(
    workdir: Path = typer.Option(Path(".demo"), "--workdir", help="where the demo keeps its database and logs"),
    fresh: bool = typer.Option(False, "--fresh", help="start from an empty database (drops the demo's data)"),
) -> None:
    """Start everything, print the console URL and the admin login, and run until Ctrl-C."""
    demo.run(workdir.resolve(), fresh=fresh, echo=lambda line: console.print(line, highlight=False))
