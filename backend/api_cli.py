"""`stream-platform api serve` and `api tokens …`: above the areas, like the API application it serves."""

from __future__ import annotations

import typer
import uvicorn

from backend.api.tokens_cli import app as tokens_app
from backend.cli_support import friendly_errors
from backend.config import get_settings
from backend.secrets.backends import backend_for

app = typer.Typer(help="The REST API and nginx-rtmp callbacks.", no_args_is_help=True)
app.add_typer(tokens_app, name="tokens")


@app.command("serve")
@friendly_errors
def serve(
    host: str = typer.Option(None, "--host", help="bind address (default API_HOST)"),
    port: int = typer.Option(None, "--port", help="port (default API_PORT)"),
    workers: int = typer.Option(1, "--workers", min=1),
    access_log: bool = typer.Option(False, "--access-log/--no-access-log",
                                    help="log every request (callbacks are already in the attempts table and "
                                         "/metrics; a line per callback costs CPU on the hottest path)"),
) -> None:
    """Serve the API with uvicorn on uvloop and the httptools parser (both installed with uvicorn's standard extra)."""
    settings = get_settings()
    backend_for(settings)  # a secrets store that cannot open (no key, unreachable project) stops us here, in one line
    uvicorn.run(
        "backend.api_app:create_app",  # by name: each worker process builds its own app
        factory=True,
        host=host or settings.api_host,
        port=port or settings.api_port,
        workers=workers,
        loop="uvloop",
        http="httptools",
        access_log=access_log,
        log_level=settings.log_level.lower(),
    )
