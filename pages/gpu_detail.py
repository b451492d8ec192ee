"""GPU Detail: one GPU's time series at the resolution its range calls for, its events, findings and failure risk."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd
import streamlit as st
from components import charts, fmt, series
from components.cache import cached
from components.errors import boundary, guarded
from components.session import principal

from backend.errors import NotFound
from backend.health import service as health
from backend.identity.principal import Principal
from backend.queries import service as queries
from backend.queries.timeseries import MAX_LIMIT
from backend.telemetry.fields import BY_COLUMN

me = principal()

RANGES = {"1 hour": timedelta(hours=1), "6 hours": timedelta(hours=6), "24 hours": timedelta(hours=24),
          "3 days": timedelta(days=3), "7 days": timedelta(days=7), "30 days": timedelta(days=30)}
CHARTS = (
    ("Temperature", ("gpu_temp", "memory_temp"), "°C"),
    ("Power", ("power_usage",), "W"),
    ("Utilization", ("gpu_util", "mem_copy_util", "enc_util", "dec_util"), "%"),
    ("Memory", ("fb_used", "fb_free"), "MiB"),
    ("Clocks", ("sm_clock", "mem_clock"), "MHz"),
)
EVENT_METRICS = ("ecc_sbe_vol_total", "ecc_dbe_vol_total", "xid_errors", "clocks_event_reasons")


@cached(ttl=30)
def gpu_choices(who: Principal) -> dict[str, str]:
    return {g.gpu_uuid: f"{g.host} · GPU {g.gpu_index} · {g.model or '?'}" for g in queries.all_gpus(who)}


@cached(ttl=15)
def load_series(who: Principal, gpu_uuid: str, span_s: float, end_minute: datetime) -> object:
    """Cached per minute of the range's end, so reruns within a minute reuse the answer."""
    metrics = [m for _, names, _ in CHARTS for m in names] + list(EVENT_METRICS)
    return queries.gpu_timeseries(who, gpu_uuid, end_minute - timedelta(seconds=span_s), end_minute, metrics,
                                  limit=MAX_LIMIT, bands=False)


st.title("GPU Detail")
choices = {}
with guarded("GPUs"):
    choices = gpu_choices(me)
if not choices:
    st.info("No GPU has reported yet: start a collector and the sink, then come back.", icon=":material/info:")
    st.stop()

wanted = st.query_params.get("gpu")
uuids = list(choices)
left, right = st.columns([3, 2])
gpu_uuid = left.selectbox("GPU", uuids, index=uuids.index(wanted) if wanted in uuids else 0,
                          format_func=choices.get, key="detail-gpu")
st.query_params["gpu"] = gpu_uuid
span_label = right.segmented_control("Range", list(RANGES), default="24 hours", key="detail-range") or "24 hours"

with guarded("Status"):
    detail = queries.gpu_detail(me, gpu_uuid)
    gpu = detail.gpu
    cols = st.columns(5)
    cols[0].metric("Status", gpu.status)
    cols[1].metric("Temperature", fmt.number(gpu.latest.get("gpu_temp"), "°C"))
    cols[2].metric("Power", fmt.number(gpu.latest.get("power_usage"), "W"))
    cols[3].metric("Utilization", fmt.number(gpu.latest.get("gpu_util"), "%"))
    cols[4].metric("Last sample", fmt.ago(gpu.sample_time))
    st.caption(f"{gpu.model or '?'} · driver {gpu.driver or '?'} · {gpu.host} · GPU {gpu.gpu_index} · "
               f"{gpu.gpu_uuid} · " + ", ".join(f"{k}={v}" for k, v in sorted(gpu.labels.items())))

with guarded("Findings and risk"):
    findings_col, risk_col = st.columns([3, 2])
    try:
        assessed = health.gpu_detail(me, gpu_uuid)
    except NotFound:
        assessed = None
    with findings_col:
        st.subheader("Findings")
        if assessed is None:
            st.info("Not evaluated yet: the health evaluation (`stream-platform health evaluate`) runs every 30 s.")
        elif not assessed.health.findings:
            st.success("No findings: every health rule passes.", icon=":material/check_circle:")
        for finding in assessed.health.findings if assessed else []:
            box = st.error if finding.severity == "critical" else st.warning
            evidence = " · ".join(f"{key}: {value}" for key, value in finding.evidence.items())
            box(f"**{finding.title}** (since {fmt.when(finding.since)})\n\n{finding.action}\n\n*Evidence:* {evidence}")
    with risk_col:
        st.subheader("Failure risk")
        risk = assessed.risk if assessed else None
        if risk is None:
            st.info("No prediction yet: the risk model scores GPUs after `stream-platform health train`.")
        else:
            st.metric(f"Critical fault within {risk.horizon_h} h", f"{risk.probability:.0%}",
                      help=f"model {risk.model_version}; rule baseline score {risk.baseline_score:.2f}")
            st.caption(f"Predicted {fmt.ago(risk.predicted_at)}. Top reasons:")
            st.dataframe(pd.DataFrame([{"feature": c.feature, "value": round(c.value, 3),
                                        "typical": round(c.typical, 3), "adds to risk": f"{c.delta:+.1%}"}
                                       for c in risk.top_features]), hide_index=True)


@st.fragment(run_every="30s")
@boundary("Time series")
def charts_panel(gpu_uuid: str, span: timedelta) -> None:
    end = datetime.now(UTC).replace(second=0, microsecond=0) + timedelta(minutes=1)
    data = load_series(me, gpu_uuid, span.total_seconds(), end)
    st.caption(f"Resolution: {data.resolution} ({len(data.points)} points) · updates every 30 s")
    if not data.points:
        st.info("No samples in this range; choose a longer one.")
        return
    left, right = st.columns(2)
    for i, (title, metrics, unit) in enumerate(CHARTS):
        target = left if i % 2 == 0 else right
        shown = series.frame(data.points, metrics).replace({"metric": {m: BY_COLUMN[m].description
                                                                       for m in metrics}})
        target.plotly_chart(charts.timeseries(shown, x="time", y="value", color="metric", title=title, unit=unit),
                            use_container_width=True)
    found = series.events(data.points)
    st.subheader("ECC, XID and throttle events")
    if found.empty:
        st.success("No ECC errors, XIDs or throttling in this range.", icon=":material/check_circle:")
    else:
        st.plotly_chart(charts.events(found, x="time", y="kind", text="text", title="Events",
                                      categories=series.EVENT_KINDS), use_container_width=True)


charts_panel(gpu_uuid, RANGES[span_label])
