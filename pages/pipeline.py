"""Pipeline: ingest rate, consumer lag per partition, sink instances, dead letters with their reasons, and the
Parquet archive of raw days.

Everything rendered comes from the database: lag, write rates, sinks and dead-letter counts are what the sinks
recorded (every SINK_STATUS_INTERVAL_S). The broker is asked only when someone presses "Ask the broker now"."""

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


def _lag_table(partitions: list[status.PartitionLag], *, positions: bool) -> pd.DataFrame:
    return pd.DataFrame([{"topic": p.topic, "partition": p.partition,
                          "committed": p.committed if p.committed is not None else "–",
                          **({"position": p.position if p.position is not None else "–"} if positions else {}),
                          "end": p.end if p.end is not None else "–", "lag": p.lag if p.lag is not None else "–"}
                         for p in partitions])


def _reasons(counts: dict[str, int]) -> str:
    return ", ".join(f"{reason} {n:,}" for reason, n in sorted(counts.items()))


@st.fragment(run_every="15s")
@boundary("Pipeline")
def pipeline_panel(minutes: int) -> None:
    view = status.overview(me, minutes=minutes)
    sinks = view.sinks
    cols = st.columns(4)
    cols[0].metric("Ingest", fmt.number(view.ingest.rows_per_s, "samples/s", 1),
                   help=f"samples stored per second over the last {minutes} min, by sample time")
    cols[1].metric("Consumer lag", fmt.number(sinks.lag_total, "messages") if sinks.lag_total is not None
                   else "unknown", help="as the running sinks last recorded it")
    cols[2].metric("Sink instances", len(sinks.running), help="running sinks that reported recently")
    cols[3].metric("Dead letters", fmt.number(sum(sinks.dead_letters.values())),
                   help="sent to the dead-letter topic since the running sinks started")
    if sinks.unknown_because:
        st.caption(f"Lag unknown — {sinks.unknown_because}.")

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
        st.markdown(f"**Lag per partition** (group `{view.group}`, as the sinks recorded it)")
        if sinks.lag:
            st.dataframe(_lag_table(sinks.lag, positions=True), hide_index=True)
        else:
            st.caption("No running sink holds a partition.")
    with right:
        st.markdown("**Sink instances**")
        if sinks.instances:
            st.dataframe(pd.DataFrame([{
                "instance": i.instance_id, "host": i.host, "state": i.state, "partitions": len(i.partitions),
                "samples/s": round(i.samples_per_s, 1), "started": fmt.when(i.started_at),
                "last report": f"{fmt.duration(i.age_s)} ago",
            } for i in sinks.instances]), hide_index=True)
        else:
            st.caption("No sink has reported: start one with `stream-platform pipeline sink`.")
    if sinks.dead_letters:
        st.caption(f"Dead letters by reason: {_reasons(sinks.dead_letters)}. Ask the broker below to read them.")
    st.caption("Updates every 15 s from what the sinks recorded.")


@st.fragment
@boundary("Broker")
def broker_panel() -> None:
    st.subheader("Ask the broker")
    st.caption("The numbers above are the sinks' own reports. The broker's answer — lag per partition, the "
               "consumer group's members and the newest dead letters — takes a moment, so it is read on demand.")
    if not st.button("Ask the broker now", key="ask-broker", icon=":material/sync:"):
        return
    with st.spinner("Asking the broker…"):
        live = status.live(me, dlq_limit=50)
    st.markdown(f"**Lag per partition** (the broker, {fmt.when(live.asked_at)}): "
                f"{fmt.number(live.lag_total, 'messages')} in all")
    if live.lag:
        st.dataframe(_lag_table(live.lag, positions=False), hide_index=True)
    st.markdown("**Group members**")
    if live.members:
        st.dataframe(pd.DataFrame([{"client": m.client_id, "host": m.host, "partitions": ", ".join(m.partitions)}
                                   for m in live.members]), hide_index=True)
    else:
        st.caption("The broker lists no members (tansu never does).")
    if live.dead_letters:
        st.markdown(f"**Dead letters** (topic `{live.dlq_topic}`, {live.dlq_total:,} in all, newest first)")
        st.dataframe(pd.DataFrame([{
            "at": fmt.when(d.timestamp), "reason": d.reason, "detail": d.detail,
            "source": f"{d.source_topic}[{d.source_partition}]@{d.source_offset}", "key": d.key or "–",
            "bytes": d.size, "preview": d.preview,
        } for d in live.dead_letters]), hide_index=True)
    else:
        st.success(f"No dead letters in `{live.dlq_topic}`: every message so far was valid.",
                   icon=":material/check_circle:")


pipeline_panel(int(minutes))
broker_panel()


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
