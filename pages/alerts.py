"""Alerts: open, acknowledged and resolved, worst and newest first; operators acknowledge."""

from __future__ import annotations

import pandas as pd
import streamlit as st
from components import flash, fmt
from components.errors import boundary, guarded
from components.session import principal

from backend.health import service as health
from backend.identity.principal import Role

me = principal()

st.title("Alerts")
flash.show()
states = st.pills("State", ["open", "acknowledged", "resolved"], selection_mode="multi",
                  default=["open", "acknowledged"], key="alert-states")
severity = st.segmented_control("Severity", ["critical", "warning"], key="alert-severity")


@st.fragment(run_every="30s")
@boundary("Alerts")
def alert_table(states: tuple[str, ...], severity: str | None) -> list:
    found = health.list_alerts(me, states=states or None, severity=severity, limit=500)
    if not found:
        st.success("No alerts in these states.", icon=":material/check_circle:")
        return []
    st.dataframe(pd.DataFrame([{
        "id": a.id, "severity": a.severity, "state": a.state, "GPU": f"{a.host} · {a.gpu_index}",
        "title": a.title, "since": fmt.when(a.since), "last firing": fmt.ago(a.last_firing_at),
        "acknowledged by": a.acknowledged_by or "–", "note": a.ack_note or "", "action": a.action,
    } for a in found]), hide_index=True, column_config={"action": st.column_config.TextColumn(width="large")})
    st.caption("Updates every 30 s.")
    return found


found = alert_table(tuple(states), severity) or []

open_alerts = [a for a in found if a.state == "open"]
if me.has(Role.operator) and open_alerts:
    st.subheader("Acknowledge")
    with st.form("ack"):
        chosen = st.selectbox("Alert", open_alerts, format_func=lambda a: f"#{a.id} {a.severity}: {a.title} "
                                                                           f"({a.host} · GPU {a.gpu_index})")
        note = st.text_input("Note", placeholder="who is on it, ticket number…", max_chars=500)
        submitted = st.form_submit_button("Acknowledge", type="primary")
    if submitted:
        with guarded("Acknowledge"):
            health.acknowledge(me, chosen.id, note or None)
            flash.flash(f"Alert #{chosen.id} acknowledged.")
            st.rerun()
elif not me.has(Role.operator):
    st.caption("Viewers see alerts; operators and admins acknowledge them.")
