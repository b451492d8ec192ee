"""Costs: spend by day / model / host / label with idle cost, $/1M tokens per served model, the month-end
projection, the auto-shutdown savings ledger, cost per stream, and the price catalogs (admins edit them)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd
import plotly.express as px
import streamlit as st
from components import charts, flash, fmt
from components.cache import cached
from components.errors import guarded
from components.session import principal

from backend.config import get_settings
from backend.costs import service as costs
from backend.costs.catalog import PRICING_KINDS
from backend.identity.principal import Principal, Role

me = principal()

RANGES = {"Last 24 hours": timedelta(days=1), "Last 7 days": timedelta(days=7), "Last 30 days": timedelta(days=30)}

st.title("Costs")
flash.show()
left, right = st.columns([2, 1])
range_label = left.segmented_control("Range", list(RANGES), default="Last 7 days", key="cost-range") or "Last 7 days"
idle_pct = right.number_input("Idle below (% utilization)", min_value=0.0, max_value=100.0,
                              value=float(get_settings().cost_idle_util_threshold), step=1.0, key="idle-threshold")
end = datetime.now(UTC).replace(second=0, microsecond=0)
start = end - RANGES[range_label]


@cached(ttl=60, show_spinner="Adding up GPU-minutes…")
def load(who: Principal, start: datetime, end: datetime, group_by: str, idle_pct: float) -> object:
    return costs.cost_summary(who, start, end, group_by=group_by, idle_threshold_pct=idle_pct)


@cached(ttl=60)
def headline(who: Principal, end: datetime, idle_pct: float) -> tuple[object, object]:
    """The month projection and this month's savings ledger (both scan the month: cached for a minute)."""
    month_start = end.replace(day=1, hour=0, minute=0)
    return (costs.month_projection(who, end, idle_threshold_pct=idle_pct),
            costs.savings_ledger(who, month_start, end))


@cached(ttl=60)
def per_stream(who: Principal, start: datetime, end: datetime, group_by: str) -> object:
    return costs.stream_costs_of(who, start, end, group_by=group_by)


@cached(ttl=60)
def per_model(who: Principal, start: datetime, end: datetime) -> list:
    return costs.token_costs(who, start, end)


with guarded("Spend"):
    total = load(me, start, end, "total", idle_pct).total
    month, saved = headline(me, end, idle_pct)
    cols = st.columns(5)
    cols[0].metric("Spend", fmt.money(total.cost_usd), help=f"{total.gpu_hours:,.1f} GPU-hours in the range")
    cols[1].metric("Idle cost", fmt.money(total.idle_cost_usd),
                   help=f"{total.idle_gpu_hours:,.1f} GPU-hours below {idle_pct:.0f}% utilization")
    cols[2].metric("Month to date", fmt.money(month.month_to_date_usd))
    cols[3].metric("Month projection", fmt.money(month.projected_month_usd),
                   help=f"month to date + {fmt.money(month.run_rate_usd_per_day)}/day × "
                        f"{month.remaining_days:.1f} days left")
    cols[4].metric("Auto-shutdown saved (month)", fmt.money(saved.saved_usd),
                   help=f"{saved.saved_gpu_hours:,.1f} GPU-hours not billed; {saved.assumption}")
    if total.unpriced_gpu_hours:
        st.warning(f"{total.unpriced_gpu_hours:,.1f} GPU-hours have no catalog price and are not in the totals: "
                   "add prices for their models below.", icon=":material/sell:")
    if total.gpu_hours == 0:
        st.info("No GPU-hours in this range yet: costs follow the telemetry the sink stores.")

with guarded("Spend by day"):
    daily = load(me, start, end, "day", idle_pct).rows
    if daily:
        frame = pd.DataFrame([{"day": r.key, "kind": kind, "usd": value} for r in sorted(daily, key=lambda r: r.key)
                              for kind, value in (("used", r.used_cost_usd), ("idle", r.idle_cost_usd))])
        st.plotly_chart(charts.bars(frame, x="day", y="usd", color="kind", title="Spend per day (used vs idle)",
                                    unit="USD", money=True), use_container_width=True)

with guarded("Spend by group"):
    left, right = st.columns([1, 1])
    group = left.segmented_control("Group by", ["model", "host", "label"], default="model", key="cost-group") \
        or "model"
    label = right.text_input("Label", value="team", key="cost-label") if group == "label" else ""
    group_by = f"label:{label.strip()}" if group == "label" else group
    rows = load(me, start, end, group_by, idle_pct).rows
    if rows:
        table = pd.DataFrame([{group: r.key, "GPUs": r.gpus, "GPU-hours": round(r.gpu_hours, 1),
                               "spend $": round(r.cost_usd, 2), "idle $": round(r.idle_cost_usd, 2),
                               "idle %": round(100 * r.idle_cost_usd / r.cost_usd, 1) if r.cost_usd else None,
                               "$/GPU-hour": round(r.usd_per_gpu_hour, 2) if r.usd_per_gpu_hour else None}
                              for r in rows])
        fig = px.bar(table, x=group, y=["spend $", "idle $"], barmode="group", title=f"Spend by {group_by}")
        fig.update_traces(hovertemplate="%{x}<br>$%{y:,.2f}<extra>%{fullData.name}</extra>")
        fig.update_layout(height=300, margin={"l": 10, "r": 10, "t": 40, "b": 10}, yaxis_title="USD")
        st.plotly_chart(fig, use_container_width=True)
        st.dataframe(table, hide_index=True)

st.subheader("Auto-shutdown savings this month")
with guarded("Savings"):
    month, ledger = headline(me, end, idle_pct)
    st.caption(f"Assumption: {ledger.assumption}.")
    if not ledger.rows:
        st.info("No auto-shutdown stops this month: the ledger fills as agents stop idle VMs.")
    else:
        if ledger.would_save_usd:
            st.caption(f"Dry-run agents would have saved {fmt.money(ledger.would_save_usd)} more (not counted).")
        left, right = st.columns(2)
        hosts = pd.DataFrame([{"VM": h.key, "kind": kind, "usd": value} for h in ledger.by_host
                              for kind, value in (("saved", h.saved_usd), ("would have saved", h.would_save_usd))])
        left.plotly_chart(charts.bars(hosts, x="VM", y="usd", color="kind", title="Saved by VM", unit="USD",
                                      money=True), use_container_width=True)
        days = pd.DataFrame([{"day": d.key, "kind": kind, "usd": value} for d in ledger.by_day
                             for kind, value in (("saved", d.saved_usd), ("would have saved", d.would_save_usd))])
        right.plotly_chart(charts.bars(days, x="day", y="usd", color="kind", title="Saved by day", unit="USD",
                                       money=True), use_container_width=True)
        st.dataframe(pd.DataFrame([{
            "VM": r.host, "kind": "auto-stop" if r.kind == "stopped" else "dry run", "action": r.action,
            "GPUs": r.gpus, "$/hour": round(r.usd_per_hour, 4), "stopped": fmt.when(r.stopped_at),
            "started": fmt.when(r.started_at) if r.started_at else "still stopped", "hours": round(r.hours, 2),
            "saved $": round(r.saved_usd, 2)} for r in ledger.rows]), hide_index=True)

st.subheader("Cost per stream")
with guarded("Stream costs"):
    left, right = st.columns([1, 1])
    stream_group = left.segmented_control("Charge back to", ["stream", "owner", "key", "label"], default="stream",
                                          key="stream-cost-group") or "stream"
    stream_label = right.text_input("Key label", value="team", key="stream-cost-label") \
        if stream_group == "label" else ""
    by = per_stream(me, start, end, f"label:{stream_label.strip()}" if stream_group == "label" else stream_group)
    st.caption(f"Rule: {by.rule}.")
    if not by.rows:
        st.info("No stream sessions in this range: sessions are recorded as nginx-rtmp's callbacks allow them.")
    else:
        total = by.total
        cols = st.columns(3)
        cols[0].metric("Stream cost", fmt.money(total.cost_usd), help=f"{total.stream_hours:,.1f} stream-hours")
        cols[1].metric("$ / stream-hour", fmt.money(total.usd_per_stream_hour))
        cols[2].metric("Unattributed stream-hours", f"{by.unattributed_stream_hours:,.1f}",
                       help="sessions with no STREAMS_HOST, or on a host without GPUs: charged nothing")
        st.dataframe(pd.DataFrame([{
            stream_group: r.key, "sessions": r.sessions, "stream-hours": round(r.stream_hours, 2),
            "GPU-hours": round(r.gpu_hours, 2), "cost $": round(r.cost_usd, 2),
            "$/stream-hour": round(r.usd_per_stream_hour, 4) if r.usd_per_stream_hour is not None else None,
        } for r in by.rows]), hide_index=True)

st.subheader("Cost per 1M tokens")
with guarded("Token costs"):
    models = per_model(me, start, end)
    if not models:
        st.info("No token usage in this range: inference servers report it on the token.usage.v1 topic.")
    else:
        st.dataframe(pd.DataFrame([{
            "served model": t.served_model, "GPUs": t.gpus, "requests": t.requests,
            "tokens": t.prompt_tokens + t.completion_tokens, "GPU-hours": round(t.gpu_hours, 1),
            "cost $": round(t.cost_usd, 2),
            "$/1M tokens": round(t.usd_per_million_tokens, 4) if t.usd_per_million_tokens is not None else None,
            "$/1M completion": round(t.usd_per_million_completion_tokens, 4)
            if t.usd_per_million_completion_tokens is not None else None,
            "tokens/s/GPU": round(t.tokens_per_second_per_gpu, 1) if t.tokens_per_second_per_gpu else None,
            "p95 ms": round(t.latency_ms_p95, 1) if t.latency_ms_p95 else None,
            "uncosted tokens": t.uncosted_tokens,
        } for t in models]), hide_index=True)

st.subheader("Price catalog")
with guarded("Prices"):
    prices = costs.list_prices(me)
    st.dataframe(pd.DataFrame([{"GPU model": p.gpu_model, "pricing": p.pricing_kind,
                                "$/GPU-hour": float(p.usd_per_gpu_hour), "since": fmt.when(p.effective_from),
                                "source": p.source, "updated by": p.updated_by} for p in prices]), hide_index=True)
if me.has(Role.admin):
    with st.expander("Set a price", icon=":material/edit:"), st.form("set-price", clear_on_submit=True):
        a, b, c = st.columns(3)
        model = a.text_input("GPU model", placeholder="NVIDIA H100 80GB HBM3")
        kind = b.selectbox("Pricing", PRICING_KINDS)
        amount = c.number_input("USD per GPU-hour", min_value=0.0, step=0.01, format="%.4f")
        source = st.text_input("Source", placeholder="where the price comes from (list price page, contract)")
        if st.form_submit_button("Save price", type="primary"):
            with guarded("Save price"):
                costs.set_price(me, model, kind, amount, source=source)
                load.clear()
                flash.flash(f"Price for {model.strip()} ({kind}) saved; it applies from now on.")
                st.rerun()
else:
    st.caption("Admins edit prices here; a new price applies from the moment it is saved.")
