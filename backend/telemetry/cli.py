"""`stream-platform pipeline …`: collectors that produce telemetry, and the sink that stores it."""

from __future__ import annotations

import typer

from backend.telemetry.archive_cli import app as archive_app
from backend.telemetry.produce_cli import produce
from backend.telemetry.sink_cli import maintain, rollup, sink, status

app = typer.Typer(help="Telemetry pipeline: produce samples to Kafka, sink them into PostgreSQL.",
                  no_args_is_help=True)
app.command("produce")(produce)
app.command("sink")(sink)
app.command("rollup")(rollup)
app.command("maintain")(maintain)
app.command("status")(status)
app.add_typer(archive_app, name="archive")
