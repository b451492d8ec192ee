"""Overview: is anything on fire? GPUs by status, open alerts, spend, live streams, VMs and the pipeline.

Each panel is a parallel fragment: the panels query different areas, so they run side by side and the page is as
slow as its slowest panel, not as the sum of them. Each refreshes on its own timer.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime

import pandas as pd
import streamlit as st
from components import fmt
from components.cache import cached
from components.errors import boundary
from components.nav import link
from components.session import principal

from backend.costs import service as costs
from backend.health import service as health
from backend.identity.principal import Principal
from backend.queries import service as queries
from backend.streams import service as streams
from backend.telemetry import pipeline_status as pipeline
from backend.vm import service as vm

me = principal()


@cached(ttl=15)
def fleet_numbers(who: Principal) -> tuple[Counter, list]:
    return Counter(g.status for g in queries.all_gpus(who)), queries.host_rollup(who)


@cached(ttl=300)
def spend_numbers(who: Principal, hour: datetime) -> tuple[float, float, float, float]:
    """Today, idle today, month to date, month projection; spend moves slowly, so at most every 5 minutes."""
    now = datetime.now(UTC)
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    today = costs.cost_summary(who, midnight, now, group_by="total").total
    month = costs.month_projection(who, now)
    return today.cost_usd, today.idle_cost_usd, month.month_to_date_usd, month.projected_month_usd


@cached(ttl=300)
def month_savings(who: Principal, hour: datetime) -> tuple[float, str]:
    """This month's auto-shutdown savings from the ledger, and the assumption behind the figure."""
    ledger = costs.savings_ledger(who, hour.replace(day=1, hour=0), datetime.now(UTC))
    return ledger.saved_usd, ledger.assumption


@cached(ttl=30)
def vm_rows(who: Principal) -> list[dict]:
    return [{"name": i.name, "status": i.status, "zone": i.zone, "auto-shutdown": i.autoshutdown or "no agent report"}
            for i in vm.list_vms(who)]


@cached(ttl=10)
def pipeline_numbers(who: Principal) -> pipeline.SinkStatus:
    """The sinks' own reports from the database (one small query): no broker call on the render path."""
    return pipeline.sink_status(who)


st.title("Overview")
st.caption(f"As of {fmt.when(datetime.now(UTC))} · panels refresh on their own")


@st.fragment(run_every="30s", parallel=True)
@boundary("GPUs")
def gpus_panel() -> None:
    st.subheader("GPUs")
    counts, hosts = fleet_numbers(me)
    if not hosts:
        st.info("No GPU has reported yet: start a collector and the sink.", icon=":material/info:")
        return
    cols = st.columns(4)
    for col, status in zip(cols, ("healthy", "warning", "critical", "unknown"), strict=True):
        col.metric(status.capitalize(), counts.get(status, 0))
    st.dataframe(pd.DataFrame([{
        "host": h.key, "GPUs": h.gpus, "models": ", ".join(h.models), "critical": h.status_counts.get("critical", 0),
        "warning": h.status_counts.get("warning", 0), "stale": h.stale_gpus,
        "avg temp °C": round(h.avg_gpu_temp or 0, 1), "avg util %": round(h.avg_gpu_util or 0, 1),
        "power kW": round((h.total_power_w or 0) / 1000, 2),
    } for h in hosts]), hide_index=True, height=250)
    link(me, "gpu_health.py", "Open GPU Health")


@st.fragment(run_every="30s", parallel=True)
@boundary("Alerts")
def alerts_panel() -> None:
    st.subheader("Open alerts")
    active = health.list_alerts(me, states=("open",), limit=200)
    cols = st.columns(2)
    cols[0].metric("Open", len(active))
    cols[1].metric("Critical", sum(a.severity == "critical" for a in active))
    if active:
        st.dataframe(pd.DataFrame([{"severity": a.severity, "GPU": f"{a.host} · {a.gpu_index}", "title": a.title,
                                    "since": fmt.ago(a.since)} for a in active[:8]]), hide_index=True)
    else:
        st.success("No open alerts.", icon=":material/check_circle:")
    link(me, "alerts.py", "Open Alerts")


@st.fragment(run_every="5m", parallel=True)
@boundary("Spend")
def spend_panel() -> None:
    st.subheader("Spend")
    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    today, idle, month_to_date, projected = spend_numbers(me, hour)
    saved, assumption = month_savings(me, hour)
    cols = st.columns(4)
    cols[0].metric("Today", fmt.money(today), help=f"of which idle: {fmt.money(idle)}")
    cols[1].metric("Month to date", fmt.money(month_to_date))
    cols[2].metric("Month projection", fmt.money(projected))
    cols[3].metric("Auto-shutdown saved (month)", fmt.money(saved), help=assumption)
    link(me, "costs.py", "Open Costs")


@st.fragment(run_every="15s", parallel=True)
@boundary("Live streams")
def streams_panel() -> None:
    st.subheader("Live streams")
    found = streams.list_live(me)
    st.metric("Live now", len(found))
    if found:
        now = datetime.now(UTC)
        st.dataframe(pd.DataFrame([{"stream": f"{s.app}/{s.stream}", "owner": s.owner or "–",
                                    "bitrate": "–" if s.bitrate_kbps is None else fmt.bitrate(s.bitrate_kbps * 1000),
                                    "uptime": fmt.duration(now - s.started_at)} for s in found[:8]]),
                     hide_index=True)
    else:
        st.caption("Nobody is publishing right now.")
    link(me, "streams.py", "Open Streams")


@st.fragment(run_every="30s", parallel=True)
@boundary("VMs")
def vms_panel() -> None:
    st.subheader("VMs and auto-shutdown")
    rows = vm_rows(me)
    if rows:
        st.dataframe(pd.DataFrame(rows), hide_index=True)
    else:
        st.caption("No VMs found.")
    link(me, "vms.py", "Open VMs")


@st.fragment(run_every="30s", parallel=True)
@boundary("Pipeline")
def pipeline_panel() -> None:
    st.subheader("Pipeline")
    sinks = pipeline_numbers(me)
    cols = st.columns(2)
    cols[0].metric("Ingest (sinks)", fmt.number(sinks.samples_per_s, "samples/s", 1) if sinks.running else "unknown",
                   help="samples stored per second, as the running sinks last reported")
    cols[1].metric("Consumer lag", fmt.number(sinks.lag_total, "messages") if sinks.lag_total is not None
                   else "unknown")
    if sinks.unknown_because:
        st.caption(f"Lag unknown — {sinks.unknown_because}.")
    link(me, "pipeline.py", "Open Pipeline")


left, right = st.columns(2)
with left:
    gpus_panel()
    spend_panel()
    pipeline_panel()
with right:
    alerts_panel()
    streams_panel()
    vms_panel()
