"""Overview: is anything on fire? GPUs by status, open alerts, spend, live streams, VMs and the pipeline."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime

import pandas as pd
import streamlit as st
from components import fmt
from components.backends import not_available, optional
from components.db import connection
from components.errors import boundary, guarded
from components.nav import link
from components.session import principal

me = principal()
fleet = optional("backend.queries.fleet")
health = optional("backend.health.service")
spend = optional("backend.costs.spend")
projection = optional("backend.costs.projection")
live = optional("backend.streams.live")
vm = optional("backend.vm.service")
pipeline = optional("backend.telemetry.pipeline_status")

st.title("Overview")
st.caption(f"As of {fmt.when(datetime.now(UTC))} · panels refresh every 30 s")


@st.fragment(run_every="30s")
@boundary("GPUs")
def gpus_panel() -> None:
    st.subheader("GPUs")
    if fleet is None:
        not_available("GPU status")
        return
    with connection() as conn:
        page = fleet.fleet_overview(conn, limit=1000)
        hosts = fleet.host_rollup(conn)
    if page.total == 0:
        st.info("No GPU has reported yet: start a collector and the sink.", icon=":material/info:")
        return
    counts = Counter(g.status for g in page.items)
    cols = st.columns(4)
    for col, status in zip(cols, ("healthy", "warning", "critical", "unknown"), strict=True):
        col.metric(status.capitalize(), counts.get(status, 0))
    st.dataframe(pd.DataFrame([{
        "host": h.key, "GPUs": h.gpus, "models": ", ".join(h.models), "critical": h.status_counts.get("critical", 0),
        "warning": h.status_counts.get("warning", 0), "stale": h.stale_gpus,
        "avg temp °C": round(h.avg_gpu_temp or 0, 1), "avg util %": round(h.avg_gpu_util or 0, 1),
        "power kW": round((h.total_power_w or 0) / 1000, 2),
    } for h in hosts]), hide_index=True)
    link(me, "gpu_health.py", "Open GPU Health")


@st.fragment(run_every="30s")
@boundary("Alerts")
def alerts_panel() -> None:
    st.subheader("Open alerts")
    if health is None:
        not_available("Alerts")
        return
    with connection() as conn:
        active = health.list_alerts(conn, states=("open",), limit=200)
    critical = sum(a.severity == "critical" for a in active)
    cols = st.columns(2)
    cols[0].metric("Open", len(active))
    cols[1].metric("Critical", critical)
    if active:
        st.dataframe(pd.DataFrame([{"severity": a.severity, "GPU": f"{a.host} · {a.gpu_index}", "title": a.title,
                                    "since": fmt.ago(a.since)} for a in active[:8]]), hide_index=True)
    else:
        st.success("No open alerts.", icon=":material/check_circle:")
    link(me, "alerts.py", "Open Alerts")


def spend_panel() -> None:
    st.subheader("Spend")
    if spend is None or projection is None:
        not_available("Costs")
        return
    now = datetime.now(UTC)
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    with connection() as conn:
        today = spend.cost_summary(conn, midnight, now, group_by="total").total if now > midnight else None
        month = projection.month_projection(conn, now)
    cols = st.columns(3)
    cols[0].metric("Today", fmt.money(today.cost_usd if today else 0.0),
                   help=f"idle: {fmt.money(today.idle_cost_usd)}" if today else None)
    cols[1].metric("Month to date", fmt.money(month.month_to_date_usd))
    cols[2].metric("Month projection", fmt.money(month.projected_month_usd))
    link(me, "costs.py", "Open Costs")


@st.fragment(run_every="30s")
@boundary("Live streams")
def streams_panel() -> None:
    st.subheader("Live streams")
    if live is None:
        not_available("Live streams")
        return
    with connection() as conn:
        streams = live.list_live(conn, me)
    st.metric("Live now", len(streams))
    if streams:
        st.dataframe(pd.DataFrame([{"stream": f"{s.app}/{s.stream}", "owner": s.owner or "–",
                                    "bitrate": fmt.bitrate((s.bitrate_kbps or 0) * 1000),
                                    "uptime": fmt.duration(datetime.now(UTC) - s.started_at)}
                                   for s in streams[:8]]), hide_index=True)
    else:
        st.caption("Nobody is publishing right now.")
    link(me, "streams.py", "Open Streams")


def vms_panel() -> None:
    st.subheader("VMs and auto-shutdown")
    if vm is None:
        not_available("VM status")
        return
    instances = vm.list_vms(me)
    if not instances:
        st.caption("No VMs found.")
    else:
        st.dataframe(pd.DataFrame([{"name": i.name, "status": i.status, "zone": i.zone,
                                    "auto-shutdown": i.autoshutdown or "no agent report"} for i in instances]),
                     hide_index=True)
    link(me, "vms.py", "Open VMs")


@st.cache_data(ttl=30, show_spinner=False)
def pipeline_numbers(who: str) -> tuple[float, int]:
    """Ingest rate and total lag; asking the broker takes a moment, so at most every 30 s."""
    return pipeline.ingest_rate(me, minutes=5).rows_per_s, sum(p.lag for p in pipeline.consumer_lag(me))


def pipeline_panel() -> None:
    st.subheader("Pipeline")
    if pipeline is None:
        not_available("Pipeline status")
        return
    rate, lag = pipeline_numbers(me.name)
    cols = st.columns(2)
    cols[0].metric("Ingest (5 min)", fmt.number(rate, "samples/s", 1))
    cols[1].metric("Consumer lag", fmt.number(lag, "messages"))
    link(me, "pipeline.py", "Open Pipeline")


left, right = st.columns(2)
with left:
    gpus_panel()
    with guarded("Spend"):
        spend_panel()
    with guarded("Pipeline"):
        pipeline_panel()
with right:
    alerts_panel()
    streams_panel()
    with guarded("VMs"):
        vms_panel()
