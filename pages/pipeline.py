"""Pipeline: ingest rate, consumer lag per partition, sink instances, dead letters with their reasons, and the
Parquet archive of raw days."""

from __future__ import annotations

import pandas as pd
import plotly.express as px
import streamlit as st
from components import fmt
from components.errors import boundary
from components.session import principal

from backend.telemetry import archive
from backend.telemetry import pipeline_status as status

me = principal()

st.title("Pipeline")
minutes = st.segmented_control("Ingest window", [5, 15, 60], default=15, format_func=lambda m: f"{m} min",
                               key="ingest-window") or 15


@st.fragment(run_every="15s")
@boundary("Pipeline")
def pipeline_panel(minutes: int) -> None:
    with st.spinner("Asking the broker…"):
        view = status.overview(me, minutes=minutes, dlq_limit=50)
    lag_total = sum(p.lag for p in view.lag)
    cols = st.columns(4)
    cols[0].metric("Ingest", fmt.number(view.ingest.rows_per_s, "samples/s", 1))
    cols[1].metric("Consumer lag", fmt.number(lag_total, "messages"))
    cols[2].metric("Sink instances", len(view.members))
    cols[3].metric("Dead letters", fmt.number(view.dlq_total))

    if view.ingest.per_minute:
        per_minute = pd.DataFrame(view.ingest.per_minute, columns=["minute", "samples"])
        per_minute["samples/s"] = per_minute["samples"] / 60
        fig = px.bar(per_minute, x="minute", y="samples/s", title=f"Samples stored per second (last {minutes} min)")
        fig.update_traces(hovertemplate="%{x|%H:%M} UTC<br>%{y:,.1f} samples/s<extra></extra>")
        fig.update_layout(height=280, margin={"l": 10, "r": 10, "t": 40, "b": 10})
        st.plotly_chart(fig, use_container_width=True)
    else:
        st.info("No samples stored in this window. Is a collector producing and the sink running?",
                icon=":material/info:")

    left, right = st.columns(2)
    with left:
        st.markdown(f"**Lag per partition** (group `{view.group}`)")
        if view.lag:
            st.dataframe(pd.DataFrame([{"topic": p.topic, "partition": p.partition,
                                        "committed": p.committed if p.committed is not None else "–",
                                        "end": p.end, "lag": p.lag} for p in view.lag]), hide_index=True)
        else:
            st.caption("The group has no committed offsets yet.")
    with right:
        st.markdown("**Sink instances**")
        if view.members:
            st.dataframe(pd.DataFrame([{"client": m.client_id, "host": m.host, "partitions": ", ".join(m.partitions)}
                                       for m in view.members]), hide_index=True)
        else:
            st.caption("No sink is connected: start one with `stream-platform pipeline sink`.")

    st.markdown(f"**Dead letters** (topic `{view.dlq_topic}`, newest first)")
    if view.dead_letters:
        st.dataframe(pd.DataFrame([{
            "at": fmt.when(d.timestamp), "reason": d.reason, "detail": d.detail,
            "source": f"{d.source_topic}[{d.source_partition}]@{d.source_offset}", "key": d.key or "–",
            "bytes": d.size, "preview": d.preview,
        } for d in view.dead_letters]), hide_index=True)
    else:
        st.success("No dead letters: every message so far was valid.", icon=":material/check_circle:")
    st.caption("Updates every 15 s.")


pipeline_panel(int(minutes))


@boundary("Archive")
def archive_panel() -> None:
    st.subheader("Archive")
    view = archive.overview(me)
    if not view.enabled:
        st.caption("Archiving is off: set ARCHIVE_URL to keep raw days as Parquet before retention drops them.")
    if not view.days:
        if view.enabled:
            st.caption(f"No day archived yet to `{view.target}`: run `stream-platform pipeline archive`.")
        return
    verified = [d for d in view.days if d.verified]
    stored, raw = sum(d.bytes for d in verified), sum(d.raw_bytes for d in verified)
    cols = st.columns(4)
    cols[0].metric("Days archived", len(verified))
    cols[1].metric("Archive size", fmt.number(stored / 2**20, "MiB", 1))
    cols[2].metric("Compression", f"{raw / stored:.1f}×" if stored else "–", help="raw row bytes per archived byte")
    cols[3].metric("Failed", len(view.days) - len(verified))
    days = pd.DataFrame([{
        "day": d.day, "status": d.status, "samples": d.rows, "archive MiB": d.bytes / 2**20,
        "raw MiB": d.raw_bytes / 2**20, "ratio": d.compression_ratio, "bytes/sample": d.bytes_per_sample,
        "files": len(d.files), "archived": fmt.when(d.archived_at), "error": d.error or "",
    } for d in view.days])
    if verified:
        fig = px.bar(days[days["status"] == "verified"], x="day", y="archive MiB", color="ratio",
                     title="Archived size per day (colour: compression ratio)")
        fig.update_layout(height=260, margin={"l": 10, "r": 10, "t": 40, "b": 10})
        st.plotly_chart(fig, use_container_width=True)
    st.dataframe(days, hide_index=True, column_config={
        "archive MiB": st.column_config.NumberColumn(format="%.2f"),
        "raw MiB": st.column_config.NumberColumn(format="%.2f"),
        "ratio": st.column_config.NumberColumn(format="%.1f×"),
        "bytes/sample": st.column_config.NumberColumn(format="%.1f"),
    })
    st.caption(f"Target `{view.target}`. Restore a day with `stream-platform pipeline archive restore --day D`.")


archive_panel()
