"""Every console page for every role, in Streamlit's AppTest, on a real migrated database with a simulated fleet.

The data comes from the real pipeline code (simulator → sink validation → sink writer), the health evaluation,
and the areas' own service functions; nothing is mocked. Kafka is the session's tansu broker.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from backend.config import Settings
from backend.demo import store_history
from backend.health.evaluator import evaluate_once
from backend.identity import users
from backend.identity.principal import SYSTEM, PermissionDenied, Principal, Role
from backend.messaging.kafka import ensure_topics
from backend.secrets.service import get_service
from backend.streams import keys
from backend.streams.pepper import key_pepper

MAIN = str(Path(__file__).resolve().parent.parent / "app" / "main.py")
PASSWORD = "correct-horse-battery"
PEOPLE = {Role.admin: "alice", Role.operator: "oscar", Role.viewer: "victor"}
PAGES = {
    "overview.py": "Overview", "gpu_health.py": "GPU Health", "gpu_detail.py": "GPU Detail", "alerts.py": "Alerts",
    "costs.py": "Costs", "streams.py": "Streams", "vms.py": "VMs", "pipeline.py": "Pipeline", "secrets.py": "Secrets",
}
NOT_FOR = {Role.viewer: {"secrets.py"}}
SECRET_VALUE = "db-password-7Hq2"
FAULTS = ("thermal:gpu-node-00/1@30m", "ecc:gpu-node-01/2@1h", "xid79:gpu-node-01/5@2h")



@pytest.fixture(autouse=True)
def _fresh_caches() -> None:
    """Each test has its own database; cached query results from another test's database must not show."""
    st.cache_data.clear()

@pytest.fixture
def fleet(kafka_settings: Settings, db: psycopg.Connection) -> Settings:
    """Two hosts × 8 GPUs with faults, three hours of history, evaluated; users of each role; a key; a secret."""
    ensure_topics([kafka_settings.telemetry_topic, kafka_settings.token_usage_topic, kafka_settings.dlq_topic],
                  kafka_settings)
    store_history(kafka_settings, hosts=2, gpus_per_host=8, history=timedelta(hours=3), interval=timedelta(minutes=1),
                  faults=FAULTS)
    evaluate_once(kafka_settings)
    for role, name in PEOPLE.items():
        users.add_user(db, SYSTEM, name, role, PASSWORD)
    keys.create_key(db, Principal("oscar", Role.operator), key_pepper(kafka_settings), "studio-1")
    get_service(kafka_settings).create(Principal("alice", Role.admin), "db-password", value=SECRET_VALUE)
    return kafka_settings


def _as(role: Role) -> AppTest:
    at = AppTest.from_file(MAIN, default_timeout=90)
    at.session_state["principal"] = Principal(PEOPLE[role], role)
    return at.run()


def _open(at: AppTest, page: str) -> AppTest:
    at.switch_page(f"../pages/{page}").run()
    assert not at.exception, f"{page}: {[e.value for e in at.exception]}"
    assert not at.error, f"{page}: {[e.value for e in at.error]}"
    assert at.title[0].value == PAGES[page]
    return at


def _figures(at: AppTest) -> list[dict]:
    return [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]


@pytest.mark.parametrize("role", [Role.admin, Role.operator, Role.viewer])
def test_every_page_a_role_may_use_renders_without_errors(fleet: Settings, role: Role) -> None:
    at = _as(role)
    for page in PAGES:
        if page in NOT_FOR.get(role, set()):
            with pytest.raises(ValueError, match="Could not find a navigation page"):
                at.switch_page(f"../pages/{page}")
            continue
        _open(at, page)


def test_viewer_cannot_reach_secrets_in_navigation_or_in_the_service(fleet: Settings) -> None:
    at = _as(Role.viewer)
    with pytest.raises(ValueError, match="Could not find a navigation page"):
        at.switch_page("../pages/secrets.py")
    with pytest.raises(PermissionDenied):
        get_service(fleet).list_all(Principal("victor", Role.viewer))


def test_gpu_health_heatmap_covers_the_fleet_and_detail_plots_series(fleet: Settings) -> None:
    at = _open(_as(Role.viewer), "gpu_health.py")
    heatmap = next(f for f in _figures(at) if f["data"][0]["type"] == "heatmap")
    assert heatmap["data"][0]["y"] == ["gpu-node-00", "gpu-node-01"]
    assert len(heatmap["data"][0]["x"]) == 8
    assert "°C" in heatmap["data"][0]["hovertemplate"]
    assert sum(int(m.value) for m in at.metric[:4]) == 16

    at = _open(at, "gpu_detail.py")
    titles = [f["layout"]["title"]["text"] for f in _figures(at)]
    assert {"Temperature", "Power", "Utilization", "Memory", "Clocks"} <= set(titles)
    temperature = next(f for f in _figures(at) if f["layout"]["title"]["text"] == "Temperature")
    assert temperature["layout"]["yaxis"]["title"]["text"] == "°C"
    assert any(len(trace["x"]) > 100 for trace in temperature["data"])


def test_operator_acknowledges_an_alert_and_viewer_cannot(fleet: Settings, db: psycopg.Connection) -> None:
    open_ids = [r["id"] for r in db.execute("SELECT id FROM alerts WHERE state = 'open' ORDER BY id")]
    assert open_ids, "the simulated faults should have opened alerts"

    viewer = _open(_as(Role.viewer), "alerts.py")
    assert not [b for b in viewer.button if b.label == "Acknowledge"]

    at = _open(_as(Role.operator), "alerts.py")
    chosen = at.selectbox[0].value.id
    at.text_input[0].input("on it, ticket OPS-1")
    next(b for b in at.button if b.label == "Acknowledge").click().run()
    assert not at.error
    row = db.execute("SELECT state, acknowledged_by, ack_note FROM alerts WHERE id = %s", (chosen,)).fetchone()
    assert row == {"state": "acknowledged", "acknowledged_by": "oscar", "ack_note": "on it, ticket OPS-1"}
    assert "acknowledged" in at.success[0].value


def test_operator_creates_a_stream_key_shown_exactly_once(fleet: Settings, db: psycopg.Connection) -> None:
    viewer = _open(_as(Role.viewer), "streams.py")
    assert not [b for b in viewer.button if b.label == "Create key"]

    at = _open(_as(Role.operator), "streams.py")
    stream_input = next(t for t in at.text_input if t.label == "Stream name")
    stream_input.input("studio-2")
    next(t for t in at.text_input if t.label == "Expires after").input("7d")
    next(b for b in at.button if b.label == "Create key").click().run()
    assert not at.error, [e.value for e in at.error]
    shown = [c.value for c in at.code]
    assert len(shown) == 1 and len(shown[0]) >= 32
    stored = db.execute("SELECT key_prefix, expires_at FROM stream_keys WHERE stream = 'studio-2'").fetchone()
    assert shown[0].startswith(stored["key_prefix"]) and stored["expires_at"] is not None
    assert shown[0] not in json.dumps([r for r in db.execute("SELECT * FROM stream_keys")], default=str)

    at.run()
    assert not at.code, "a stream key is shown once, never again"


def test_admin_creates_and_reveals_a_secret_which_hides_on_the_next_run(fleet: Settings,
                                                                        db: psycopg.Connection) -> None:
    at = _open(_as(Role.admin), "secrets.py")
    next(t for t in at.text_input if t.label == "Name").input("api-token")
    next(t for t in at.text_input if t.label == "Value").input("tok-9f8e7d6c")
    next(b for b in at.button if b.label == "Create").click().run()
    assert not at.error, [e.value for e in at.error]
    assert "created secret api-token" in at.success[0].value

    at.selectbox(key="secret-selected").select("api-token").run()
    assert not at.code
    at.button(key="reveal-api-token").click().run()
    assert [c.value for c in at.code] == ["tok-9f8e7d6c"]
    at.run()
    assert not at.code, "a revealed value disappears on the next run"
    actions = [r["action"] for r in db.execute(
        "SELECT action FROM audit_log WHERE area = 'secrets' AND target = 'api-token' ORDER BY id")]
    assert "reveal" in actions
    assert "tok-9f8e7d6c" not in json.dumps([r for r in db.execute("SELECT * FROM audit_log")], default=str)


def test_operator_sees_secret_metadata_but_no_controls(fleet: Settings) -> None:
    at = _open(_as(Role.operator), "secrets.py")
    assert "db-password" in at.dataframe[0].value["name"].tolist()
    labels = {b.label for b in at.button}
    assert not labels & {"Create", "Reveal value", "Delete secret"}
    assert SECRET_VALUE not in str([c.value for c in at.code])


def test_admin_edits_a_price_and_viewer_sees_no_editor(fleet: Settings, db: psycopg.Connection) -> None:
    viewer = _open(_as(Role.viewer), "costs.py")
    assert not [b for b in viewer.button if b.label == "Save price"]
    assert viewer.metric[0].label == "Spend" and viewer.metric[0].value.startswith("$")

    at = _open(_as(Role.admin), "costs.py")
    next(t for t in at.text_input if t.label == "GPU model").input("NVIDIA L4")
    next(n for n in at.number_input if n.label == "USD per GPU-hour").set_value(0.9)
    next(t for t in at.text_input if t.label == "Source").input("contract 2026")
    next(b for b in at.button if b.label == "Save price").click().run()
    assert not at.error, [e.value for e in at.error]
    current = db.execute("SELECT usd_per_gpu_hour, updated_by FROM gpu_prices WHERE gpu_model = 'NVIDIA L4' "
                         "AND pricing_kind = 'on_demand' AND effective_to IS NULL").fetchone()
    assert float(current["usd_per_gpu_hour"]) == pytest.approx(0.9) and current["updated_by"] == "alice"


def test_pages_say_what_to_do_when_nothing_has_reported_yet(kafka_settings: Settings,
                                                            db: psycopg.Connection) -> None:
    users.add_user(db, SYSTEM, "alice", Role.admin, PASSWORD)
    at = _as(Role.admin)
    at.switch_page("../pages/gpu_health.py").run()
    assert "No GPU has reported yet" in at.info[0].value
    at.switch_page("../pages/gpu_detail.py").run()
    assert "No GPU has reported yet" in at.info[0].value
    assert not at.exception
