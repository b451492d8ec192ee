"""GPU Health: the fleet at a glance (heatmap host × GPU), a filterable status table with findings, top offenders."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd
import streamlit as st
from components import charts, fmt
from components.cache import cached
from components.errors import boundary, guarded
from components.nav import BY_FILE
from components.session import principal

from backend.health import service as health
from backend.identity.principal import Principal
from backend.queries import service as queries

me = principal()

HEATMAP_METRICS = {
    "Temperature": ("gpu_temp", "°C", (30.0, 95.0)),
    "Utilization": ("gpu_util", "%", (0.0, 100.0)),
    "Power": ("power_usage", "W", None),
}
STATUSES = ("healthy", "warning", "critical", "unknown")
STATUS_LABEL = {"healthy": ":green[●] healthy", "warning": ":orange[●] warning", "critical": ":red[●] critical",
                "unknown": ":gray[●] unknown"}


@cached(ttl=15)
def load_fleet(who: Principal) -> list:
    """Every GPU with its latest sample and status."""
    return queries.all_gpus(who)


@cached(ttl=15)
def load_findings(who: Principal) -> dict[str, list]:
    return {h.gpu_uuid: h.findings for h in health.fleet_health(who)}


@cached(ttl=60)
def load_offenders(who: Principal, hours: int) -> dict[str, list]:
    end = datetime.now(UTC)
    return queries.offenders_by_kind(who, end - timedelta(hours=hours), end, n=10)


st.title("GPU Health")


@st.fragment(run_every="30s")
@boundary("Fleet")
def fleet_panel() -> None:
    gpus = load_fleet(me)
    if not gpus:
        st.info("No GPU has reported yet. Start a collector (`stream-platform pipeline produce --source …`) "
                "and the sink (`stream-platform pipeline sink`); GPUs appear here within seconds.",
                icon=":material/info:")
        return
    counts = pd.Series([g.status for g in gpus]).value_counts()
    cols = st.columns(4)
    for col, status in zip(cols, STATUSES, strict=True):
        col.metric(STATUS_LABEL[status], int(counts.get(status, 0)))
    choice = st.segmented_control("Heatmap metric", list(HEATMAP_METRICS), default="Temperature",
                                  key="heatmap-metric") or "Temperature"
    column, unit, zrange = HEATMAP_METRICS[choice]
    grid = pd.DataFrame([{"host": g.host, "gpu": g.gpu_index, "value": g.latest.get(column)} for g in gpus])
    matrix = grid.pivot_table(index="host", columns="gpu", values="value", aggfunc="first", dropna=False)
    st.plotly_chart(charts.heatmap(matrix, title=f"{choice} by host and GPU (latest sample)", unit=unit,
                                   zrange=zrange), use_container_width=True)
    st.caption(f"{len(gpus)} GPUs · refreshed {fmt.when(datetime.now(UTC))} · updates every 30 s")


fleet_panel()

st.subheader("Status and findings")
with guarded("Status table"):
    gpus = load_fleet(me)
    findings = load_findings(me)
    left, middle, right = st.columns(3)
    wanted = left.multiselect("Status", list(STATUSES), default=[], placeholder="all statuses",
                              key="status-filter")
    hosts = middle.multiselect("Host", sorted({g.host for g in gpus}), placeholder="all hosts", key="host-filter")
    models = right.multiselect("Model", sorted({g.model or "?" for g in gpus}), placeholder="all models",
                               key="model-filter")
    shown = [g for g in gpus if (not wanted or g.status in wanted) and (not hosts or g.host in hosts)
             and (not models or (g.model or "?") in models)]
    table = pd.DataFrame([{
        "status": g.status, "host": g.host, "gpu": g.gpu_index, "model": g.model,
        "temp °C": g.latest.get("gpu_temp"), "util %": g.latest.get("gpu_util"),
        "power W": g.latest.get("power_usage"),
        "findings": "; ".join(f.title for f in findings.get(g.gpu_uuid, [])) or "–",
        "last seen": fmt.ago(g.last_seen), "uuid": g.gpu_uuid,
    } for g in shown])
    if table.empty:
        st.info("No GPU matches these filters.")
    else:
        picked = st.dataframe(table, hide_index=True, on_select="rerun", selection_mode="single-row",
                              key="health-table", column_config={
                                  "temp °C": st.column_config.NumberColumn(format="%.0f"),
                                  "util %": st.column_config.ProgressColumn(min_value=0, max_value=100,
                                                                            format="%.0f%%"),
                                  "power W": st.column_config.NumberColumn(format="%.0f"),
                              })
        st.caption("Select a row to open the GPU's detail.")
        rows = picked.selection.rows if picked else []
        if rows:
            st.switch_page(BY_FILE["gpu_detail.py"].path, query_params={"gpu": table.iloc[rows[0]]["uuid"]})

st.subheader("Top offenders")
hours = st.radio("Window", [1, 6, 24, 72], index=1, format_func=lambda h: f"{h} h", horizontal=True,
                 key="offender-window")
for col, (kind, title) in zip(st.columns(3), (("hottest", "Hottest"), ("ecc", "ECC errors"),
                                              ("throttled", "Most throttled")), strict=True):
    with col, guarded(title):
        st.markdown(f"**{title}**")
        found = load_offenders(me, hours)[kind]
        if not found:
            st.caption("Nothing to report in this window.")
        else:
            st.caption(found[0].unit)
            st.dataframe(pd.DataFrame([{"host": o.host, "gpu": o.gpu_index, "value": round(o.value, 1)}
                                       for o in found]), hide_index=True)
