"""Streams: who is live (with kick), stream keys (create → shown once, revoke, rotate), publish audit, lockouts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd
import plotly.express as px
import streamlit as st
from components import flash, fmt
from components.errors import boundary, guarded
from components.session import principal

from backend.costs import service as costs
from backend.identity.principal import Role
from backend.parsing import parse_duration
from backend.streams import service as streams

me = principal()
operator = me.has(Role.operator)

st.title("Streams")
flash.show()


@st.fragment(run_every="10s")
@boundary("Live streams")
def live_panel() -> None:
    now = datetime.now(UTC)
    found = streams.live_streams(me)
    st.metric("Live now", len(found))
    if not found:
        st.info("Nobody is publishing. Publish with `rtmp://HOST/live/STREAM?key=KEY` using a key from below.",
                icon=":material/videocam_off:")
        return
    st.dataframe(pd.DataFrame([{
        "stream": f"{s.app}/{s.stream}", "owner": s.owner or "–", "from": s.addr,
        "bitrate": fmt.bitrate((s.bitrate_kbps or 0) * 1000) if s.bitrate_kbps is not None else "–",
        "fps": s.stats.get("frame_rate"),
        "resolution": f"{s.stats['width']}×{s.stats['height']}" if s.stats.get("width") else "–",
        "codecs": " / ".join(str(s.stats[c]) for c in ("video_codec", "audio_codec") if s.stats.get(c)) or "–",
        "uptime": fmt.duration(now - s.started_at), "stats": fmt.ago(s.stats_at) if s.stats_at else "–",
    } for s in found]), hide_index=True)
    st.caption("Updates every 10 s.")


st.subheader("Live")
live_panel()

names: list[str] = []
if operator:
    with guarded("Kick"):
        names = [f"{s.app}/{s.stream}" for s in streams.list_live(me)]
    if names:
        left, right = st.columns([3, 1])
        target = left.selectbox("Stream to kick", names, key="kick-target")
        if right.button("Kick publisher", icon=":material/block:", key="kick"):
            app, _, stream = target.partition("/")
            with guarded("Kick"):
                dropped = streams.kick(me, stream, app=app)
                flash.flash(f"Kicked {dropped} publisher(s) from {target}; revoke the key to keep them out.")
                st.rerun()

st.subheader("Cost per stream (last 7 days)")
with guarded("Stream costs"):
    week_end = datetime.now(UTC).replace(second=0, microsecond=0)
    spent = costs.stream_costs_of(me, week_end - timedelta(days=7), week_end)
    if not spent.rows:
        st.info("No stream sessions in the last 7 days.")
    else:
        cols = st.columns(3)
        cols[0].metric("Stream cost", fmt.money(spent.total.cost_usd),
                       help=f"{spent.total.stream_hours:,.1f} stream-hours")
        cols[1].metric("$ / stream-hour", fmt.money(spent.total.usd_per_stream_hour))
        cols[2].metric("Unattributed stream-hours", f"{spent.unattributed_stream_hours:,.1f}")
        st.dataframe(pd.DataFrame([{
            "stream": r.key, "sessions": r.sessions, "stream-hours": round(r.stream_hours, 2),
            "cost $": round(r.cost_usd, 2),
            "$/stream-hour": round(r.usd_per_stream_hour, 4) if r.usd_per_stream_hour is not None else None,
        } for r in spent.top_streams]), hide_index=True)
        st.caption(f"Top streams by cost. Rule: {spent.rule}. Chargeback by owner or label: Costs page.")

st.subheader("Stream keys")
issued = flash.take("issued-key")
if issued is not None:
    st.success(f"Key {issued.key.id} for {issued.key.app}/{issued.key.stream}. Copy it now: it is shown only this "
               "once.", icon=":material/key:")
    st.code(issued.secret, language=None)
    st.caption(f"Publish to rtmp://HOST/{issued.key.app}/{issued.key.stream}?key=… or use the key as the stream "
               "name (OBS).")
if operator:
    with st.expander("Create a stream key", icon=":material/add:"), st.form("create-key", clear_on_submit=True):
        a, b = st.columns(2)
        stream = a.text_input("Stream name", placeholder="studio-1")
        app = b.text_input("Application", value="live")
        c, d = st.columns(2)
        expires = c.text_input("Expires after", placeholder="7d (empty: never)")
        owner = d.text_input("Owner", placeholder="team or person")
        cidrs = st.text_input("Allowed networks", placeholder="203.0.113.0/24, 198.51.100.7/32 (empty: anywhere)")
        if st.form_submit_button("Create key", type="primary"):
            with guarded("Create key"):
                issued = streams.create_key(
                    me, stream.strip(), app=app.strip() or "live",
                    expires_in=parse_duration(expires, what="expiry") if expires.strip() else None,
                    allowed_cidrs=[c.strip() for c in cidrs.split(",") if c.strip()], owner=owner.strip() or None)
                flash.hand_over("issued-key", issued)
                st.rerun()

show_all = st.toggle("Show revoked and expired keys", key="keys-all")
found: list = []
with guarded("Stream keys"):
    found = streams.list_keys(me, include_inactive=show_all)
if not found:
    st.info("No stream keys yet." + (" Create one above." if operator else ""), icon=":material/key_off:")
else:
    st.dataframe(pd.DataFrame([{
        "id": k.id, "stream": f"{k.app}/{k.stream}", "state": k.state(), "prefix": k.key_prefix + "…",
        "owner": k.owner or "–", "networks": ", ".join(k.allowed_cidrs) or "any",
        "expires": fmt.when(k.expires_at), "last used": fmt.ago(k.last_used_at) if k.last_used_at else "never",
        "created by": k.created_by,
    } for k in found]), hide_index=True)
    active = [k for k in found if k.state() == "active"]
    if operator and active:
        left, mid, right = st.columns([3, 1, 1])
        chosen = left.selectbox("Key", active, format_func=lambda k: f"{k.id} · {k.app}/{k.stream}",
                                key="key-action-target")
        if mid.button("Revoke", icon=":material/cancel:", key="revoke-key"):
            with guarded("Revoke"):
                kicked = streams.revoke_key(me, chosen.id).kicked
                flash.flash(f"Revoked {chosen.id}" + (f"; kicked {', '.join(kicked)}." if kicked else "."))
                st.rerun()
        if right.button("Rotate", icon=":material/autorenew:", key="rotate-key"):
            with guarded("Rotate"):
                rotated = streams.rotate_key(me, chosen.id)
                flash.hand_over("issued-key", rotated.issued)
                flash.flash(f"Rotated {chosen.id}: the new key replaces it"
                            + (f"; kicked {', '.join(rotated.kicked)}." if rotated.kicked else "."))
                st.rerun()

st.subheader("Scheduled streams")
st.caption("A scheduled key publishes only inside its window ± grace; its VM is started ahead by "
           "`stream-platform vm start-scheduled` and auto-shutdown holds it during the window.")
with guarded("Scheduled streams"):
    booked = streams.list_schedules(me)
    if not booked:
        st.info("No scheduled streams.", icon=":material/event_busy:")
    else:
        st.dataframe(pd.DataFrame([{
            "id": s.id, "name": s.name, "stream": f"{s.app}/{s.stream}", "VM": s.vm, "starts": fmt.when(s.starts_at),
            "ends": fmt.when(s.ends_at), "grace": fmt.duration(s.grace), "state": s.state(),
            "VM start": fmt.when(s.vm_started_at) if s.vm_started_at else (s.vm_start_error or "pending"),
        } for s in booked]), hide_index=True)
    keyed = [k for k in found if k.state() == "active"]
    if operator and keyed:
        with st.expander("Schedule a stream", icon=":material/event:"), st.form("schedule", clear_on_submit=True):
            a, b = st.columns(2)
            title = a.text_input("Name", placeholder="Friday keynote")
            key = b.selectbox("Key", keyed, format_func=lambda k: f"{k.id} · {k.app}/{k.stream}")
            c, d = st.columns(2)
            vm_name = c.text_input("VM", placeholder="stream-gpu-1")
            grace = d.text_input("Grace", value="5m")
            e, f = st.columns(2)
            starts = e.text_input("Starts", placeholder="2026-12-04T18:00 (UTC) or +30m")
            ends = f.text_input("Ends", placeholder="2026-12-04T19:30 (UTC) or +2h")
            if st.form_submit_button("Schedule", type="primary"):
                with guarded("Schedule"):
                    now = datetime.now(UTC)
                    made = streams.schedule_stream(me, title, key.id, vm_name, streams.parse_when(starts, now),
                                                   streams.parse_when(ends, now),
                                                   grace=parse_duration(grace, what="grace", allow_zero=True))
                    flash.flash(f"Scheduled {made.name!r} on {made.vm} from {fmt.when(made.starts_at)}.")
                    st.rerun()
    if operator and booked:
        left, right = st.columns([3, 1])
        target = left.selectbox("Schedule", booked, format_func=lambda s: f"{s.id} · {s.name}", key="sched-target")
        if right.button("Cancel schedule", icon=":material/event_busy:", key="sched-cancel"):
            with guarded("Cancel schedule"):
                streams.cancel_schedule(me, target.id)
                flash.flash(f"Cancelled schedule {target.id} ({target.name}).")
                st.rerun()

st.subheader("Publish attempts")
with guarded("Publish attempts"):
    since = datetime.now(UTC) - timedelta(hours=6)
    counts = streams.attempt_counts(me, since=since, bucket=timedelta(minutes=10))
    recent = streams.list_attempts(me, limit=100)
    if counts:
        fig = px.bar(pd.DataFrame([{"time": c.bucket, "outcome": c.outcome, "attempts": c.count} for c in counts]),
                     x="time", y="attempts", color="outcome", title="Publish attempts per 10 minutes (last 6 h)",
                     color_discrete_map={"allow": "#2e7d32", "deny": "#c62828", "error": "#ef6c00"})
        fig.update_layout(height=280, margin={"l": 10, "r": 10, "t": 40, "b": 10})
        st.plotly_chart(fig, use_container_width=True)
    if recent:
        st.dataframe(pd.DataFrame([{"at": fmt.when(a.at), "call": a.call, "from": a.addr,
                                    "stream": f"{a.app}/{a.stream}", "key": a.key_id or "–", "outcome": a.outcome,
                                    "reason": a.reason} for a in recent]), hide_index=True)
    else:
        st.caption("No publish attempts recorded yet.")

st.subheader("Lockouts")
with guarded("Lockouts"):
    failures = streams.list_failures(me)
    now = datetime.now(UTC)
    if not failures:
        st.success("No address has failed recently.", icon=":material/check_circle:")
    else:
        st.dataframe(pd.DataFrame([{"address": f.addr, "failures": f.failures, "locked": f.locked(now),
                                    "locked until": fmt.when(f.locked_until), "last failure": fmt.ago(f.last_failed_at)}
                                   for f in failures]), hide_index=True)
        if operator:
            left, right = st.columns([3, 1])
            addr = left.selectbox("Address", [f.addr for f in failures], key="lockout-addr")
            if right.button("Clear lockout", key="clear-lockout"):
                with guarded("Clear lockout"):
                    streams.clear_lockout(me, addr)
                    flash.flash(f"Cleared the lockout of {addr}.")
                    st.rerun()
