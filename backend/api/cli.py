"""`stream-platform api serve` and `api tokens …`."""

from __future__ import annotations

import typer
import uvicorn

from backend.api.tokens_cli import app as tokens_app
from backend.config import get_settings

app = typer.Typer(help="The REST API and nginx-rtmp callbacks.", no_args_is_help=True)
app.add_typer(tokens_app, name="tokens")


@app.command("serve")
def serve(
    host: str = typer.Option(None, "--host", help="bind address (default API_HOST)"),
    port: int = typer.Option(None, "--port", help="port (default API_PORT)"),
    workers: int = typer.Option(1, "--workers", min=1),
) -> None:
    """Serve the API with uvicorn."""
    settings = get_settings()
    uvicorn.run(
        "backend.api.app:create_app",
        factory=True,
        host=host or settings.api_host,
        port=port or settings.api_port,
        workers=workers,
        log_level=settings.log_level.lower(),
    )
