"""No page asks the broker while it renders: the Overview and the Pipeline page show the lag, rate and sinks the
sinks recorded in the database, and the broker is asked only when someone presses "Ask the broker now".

KAFKA_BOOTSTRAP_SERVERS points at a TCP listener that counts the connections it accepts (and answers nothing):
any Kafka client the pages build on their render path connects to it.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from backend.config import Settings, get_settings
from backend.identity import users
from backend.identity.principal import SYSTEM, Principal, Role
from backend.messaging.kafka import ensure_topics
from backend.telemetry.sink.status_report import Identity, Report, partition_view, record

MAIN = str(Path(__file__).resolve().parent.parent / "app" / "main.py")
VIEWER = Principal("victor", Role.viewer)


class ConnectionCounter:
    """A listener that accepts and holds every connection, answering nothing, and counts them."""

    def __init__(self) -> None:
        self._server = socket.create_server(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self._server.getsockname()[1]}"
        self.accepted = 0
        self._held: list[socket.socket] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._server.accept()
            except OSError:
                return
            self.accepted += 1
            self._held.append(conn)

    def close(self) -> None:
        self._server.shutdown(socket.SHUT_RDWR)  # wakes the accept() under way (close alone would not)
        self._server.close()
        for conn in self._held:
            conn.close()
        self._thread.join(5)


@pytest.fixture(autouse=True)
def _fresh_caches() -> None:
    st.cache_data.clear()


@pytest.fixture
def recorded(kafka_settings: Settings, db: psycopg.Connection) -> Settings:
    """A viewer, and one running sink's report: every partition held, 37 messages behind, 12.5 samples/s."""
    users.add_user(db, SYSTEM, VIEWER.name, VIEWER.role, "correct-horse-battery")
    lags = {(kafka_settings.telemetry_topic, 0): 7, (kafka_settings.telemetry_topic, 1): 30}
    views = [partition_view(topic, part, committed=500, position=500, low=0, high=500 + lags.get((topic, part), 0))
             for topic in (kafka_settings.telemetry_topic, kafka_settings.token_usage_topic) for part in range(4)]
    counts = {kafka_settings.telemetry_topic: 4, kafka_settings.token_usage_topic: 4}
    identity = Identity("sink-host-1-4242-abc123", kafka_settings.kafka_group_id, "sink-host-1", 4242,
                        datetime.now(UTC), 5.0)
    record(db, identity, Report(views, counts, None, 1000, 900, 0, 12.5, 13.0, {"bad_json": 3}))
    return kafka_settings


@pytest.fixture
def counter(recorded: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[ConnectionCounter]:
    listener = ConnectionCounter()
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", listener.address)
    get_settings.cache_clear()
    yield listener
    listener.close()


def _as_viewer() -> AppTest:
    at = AppTest.from_file(MAIN, default_timeout=90)
    at.session_state["principal"] = VIEWER
    return at.run()


def _metric(at: AppTest, label: str) -> str:
    return next(m.value for m in at.metric if m.label == label)


def _shown(at: AppTest) -> str:
    return " ".join(str(e.value) for kind in ("caption", "markdown", "warning", "info") for e in at.get(kind))


def test_overview_renders_the_recorded_lag_without_a_broker_call(counter: ConnectionCounter,
                                                                  db: psycopg.Connection) -> None:
    at = _as_viewer()
    assert counter.accepted == 0, "the Overview connected to the broker while rendering"
    assert not at.exception and at.title[0].value == "Overview"
    assert _metric(at, "Consumer lag") == "37 messages"
    assert _metric(at, "Ingest (sinks)") == "12.5 samples/s"

    db.execute("UPDATE sink_status SET reported_at = now() - interval '20 seconds'")  # four 5 s intervals ago
    st.cache_data.clear()
    at.run()
    assert _metric(at, "Consumer lag") == "unknown"
    assert "unknown — the sink last reported 20 s ago" in _shown(at)
    assert counter.accepted == 0


def test_pipeline_page_renders_from_the_database_and_asks_the_broker_only_on_demand(
        counter: ConnectionCounter) -> None:
    at = _as_viewer()
    at.switch_page("../pages/pipeline.py").run()
    assert counter.accepted == 0, "the Pipeline page connected to the broker while rendering"
    assert not at.exception and at.title[0].value == "Pipeline"
    assert _metric(at, "Consumer lag") == "37 messages"
    assert _metric(at, "Sink instances") == "1"
    assert _metric(at, "Dead letters") == "3"
    sinks = next(d.value for d in at.dataframe if "instance" in d.value.columns)
    assert sinks["instance"].tolist() == ["sink-host-1-4242-abc123"] and sinks["state"].tolist() == ["running"]

    at.button(key="ask-broker").click().run()  # the one way to the broker: the counter sees it
    assert counter.accepted > 0
    assert any("Kafka unreachable" in w.value for w in at.warning)


def test_ask_the_broker_now_shows_the_brokers_lag(recorded: Settings) -> None:
    ensure_topics([recorded.telemetry_topic, recorded.token_usage_topic, recorded.dlq_topic], recorded)
    at = _as_viewer()
    at.switch_page("../pages/pipeline.py").run()
    at.button(key="ask-broker").click().run()
    assert not at.exception and not at.warning, [w.value for w in at.warning]
    live = next(d.value for d in at.dataframe if "end" in d.value.columns and "position" not in d.value.columns)
    assert len(live) == 8 and live["lag"].sum() == 0
    assert "No dead letters in" in _shown(at) + " ".join(s.value for s in at.success)
