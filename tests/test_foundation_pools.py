"""The PostgreSQL adapter's pools (`backend/db/connection.py`) and their life in the API process: opened on first
use, closed when the application shuts down, and fresh again when the same application starts once more."""

from __future__ import annotations

import asyncio

import psycopg
from fastapi import Depends
from fastapi.testclient import TestClient
from pydantic import SecretStr

from backend.api.deps import db as api_db
from backend.api_app import create_app
from backend.config import Settings
from backend.db.connection import open_async_pool, query_pool

TOKEN = "pool-callback-token-" + "t" * 32


def _app(settings: Settings):
    app = create_app(settings.model_copy(update={"stream_key_pepper": SecretStr("p" * 40),
                                                 "streams_callback_token": SecretStr(TOKEN)}))

    @app.get("/test/who")
    def who(conn: psycopg.Connection = Depends(api_db)) -> dict:
        return conn.execute("SELECT current_user AS who").fetchone()

    return app


def test_the_api_and_callback_pools_close_at_shutdown_and_reopen_when_the_app_starts_again(settings: Settings) -> None:
    app = _app(settings)
    for start in ("first", "second"):
        with TestClient(app, client=("127.0.0.1", 50000)) as client:
            assert client.get("/test/who").status_code == 200, start
            refused = client.post(f"/rtmp/on_publish?token={TOKEN}",
                                  data={"call": "publish", "app": "live", "name": "cam", "key": "sk_unknown",
                                        "addr": "192.0.2.7", "clientid": "1"})
            assert refused.text == "denied\n", start  # decided from the database: the key is unknown
            api_pool, callback_pool = app.state.db_pool, app.state.rtmp_gate._pool
            assert not api_pool.closed and not callback_pool.closed
        assert api_pool.closed and callback_pool.closed, start


def test_query_pool_connections_are_autocommit_dict_rows_under_the_statement_timeout(settings: Settings) -> None:
    quick = settings.model_copy(update={"query_statement_timeout_s": 0.25})
    with query_pool(quick, name="test") as pool, pool.connection() as conn:
        row = conn.execute("SHOW statement_timeout").fetchone()
        assert row == {"statement_timeout": "250ms"} and conn.autocommit


def test_async_pool_runs_configure_on_each_new_connection(settings: Settings) -> None:
    async def check() -> dict:
        async def configure(conn: psycopg.AsyncConnection) -> None:
            await conn.execute("SET application_name = 'configured'")

        pool = await open_async_pool(settings, name="test", max_size=2, configure=configure)
        try:
            async with pool.connection() as conn:
                row = await (await conn.execute("SHOW application_name")).fetchone()
                return {**row, "autocommit": conn.autocommit}
        finally:
            await pool.close()

    assert asyncio.run(check()) == {"application_name": "configured", "autocommit": True}
