"""VMs: instances with start/stop and their scheduled streams, each host's auto-shutdown countdown with the
per-signal "why (not) idle", snooze and skip, a what-if replay of the policy, and the containers on this host."""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd
import streamlit as st
from components import flash, fmt
from components.errors import boundary, guarded
from components.session import principal

from backend.identity.principal import Role
from backend.parsing import parse_duration
from backend.streams import service as streams
from backend.vm import service as vm

me = principal()
operator = me.has(Role.operator)

st.title("VMs")
flash.show()

st.subheader("Instances")
instances: list = []
with guarded("Instances"):
    instances = vm.list_vms(me)
    booked: dict[str, str] = {}
    for s in reversed(streams.list_schedules(me)):  # the next one of each VM wins
        booked[s.vm] = f"starts at {fmt.when(s.starts_at)} for stream {s.app}/{s.stream} ({s.name})"
    if not instances:
        st.info("No VMs found. With VM_PROVIDER=gcp, instances need the label in VM_LABEL_FILTER.")
    else:
        st.dataframe(pd.DataFrame([{
            "name": i.name, "status": i.status, "zone": i.zone, "machine type": i.machine_type,
            "GPUs": ", ".join(i.gpus) or "–", "last start": fmt.when(i.last_start),
            "auto-shutdown": i.autoshutdown or "no agent report", "scheduled": booked.get(i.name, "–"),
            "labels": ", ".join(f"{k}={v}" for k, v in sorted(i.labels.items())),
        } for i in instances]), hide_index=True)
if operator and instances:
    left, mid, right = st.columns([3, 1, 1])
    chosen = left.selectbox("Instance", instances, format_func=lambda i: f"{i.name} ({i.status})", key="vm-target")
    for col, label, call in ((mid, "Start", vm.start_vm), (right, "Stop", vm.stop_vm)):
        if col.button(label, key=f"vm-{label}", icon=":material/play_arrow:" if label == "Start"
                      else ":material/stop:"):
            with guarded(label):
                call(me, chosen.name, chosen.zone)
                flash.flash(f"{label} requested for {chosen.name}.")
                st.rerun()

st.subheader("Auto-shutdown")


@st.fragment(run_every="10s")
@boundary("Auto-shutdown")
def agent_panel(host: str) -> None:
    status = vm.agent_status(me, host)
    left, right = st.columns([1, 2])
    with left:
        seconds = status.seconds_left()
        if seconds is not None:
            st.metric("Stops in", fmt.duration(seconds))
            st.warning(f"Stop announced for {fmt.when(status.state.stop_at)}", icon=":material/timer:")
        elif status.state.idle_since is not None:
            st.metric("Idle for", fmt.duration(datetime.now(UTC) - status.state.idle_since))
        else:
            st.metric("State", "in use")
        if status.state.snoozed_until:
            st.caption(f"Snoozed until {fmt.when(status.state.snoozed_until)}")
    with right:
        latest = status.latest
        if latest is None:
            st.info("This host's agent has not reported yet: run `stream-platform autoshutdown run`.")
        else:
            st.markdown(f"**Decision:** {latest.decision} · {fmt.ago(latest.at)}")
            for reason in latest.reasons:
                st.markdown(f"- {reason}")
            st.dataframe(pd.DataFrame([{
                "signal": r["signal"], "state": r["state"], "why": r["evidence"],
            } for r in latest.signals]), hide_index=True, column_config={"why": st.column_config.TextColumn(
                width="large")})
    if status.events:
        with st.expander("Recent events"):
            st.dataframe(pd.DataFrame([{"at": fmt.when(e.at), "event": e.kind,
                                        "detail": ", ".join(f"{k}={v}" for k, v in e.detail.items())}
                                       for e in status.events]), hide_index=True)


hosts: list[str] = []
with guarded("Agents"):
    hosts = vm.agent_hosts(me)
if hosts:
    host = st.selectbox("Host", hosts, key="agent-host")
    agent_panel(host)
    if operator:
        left, mid, right = st.columns([2, 1, 1])
        minutes = left.number_input("Snooze for (minutes)", min_value=1, max_value=24 * 60, value=60,
                                    key="snooze-minutes")
        if mid.button("Snooze", icon=":material/snooze:", key="snooze"):
            with guarded("Snooze"):
                vm.snooze(me, minutes * 60, host)
                flash.flash(f"Auto-shutdown of {host} snoozed for {minutes} min.")
                st.rerun()
        if right.button("Skip this stop", icon=":material/skip_next:", key="skip"):
            with guarded("Skip"):
                vm.skip(me, host)
                flash.flash(f"Countdown of {host} dropped: a full idle period must pass again.")
                st.rerun()
else:
    st.info("No auto-shutdown agent reports to this database yet.")

st.subheader("What if? Replay the policy")
st.caption("The auto-shutdown policy replayed over the stored evaluations: the stops it would have made, the hours "
           "and dollars saved, and the regrets (a stream or busy GPU within the hour after a stop).")
left, mid, right = st.columns(3)
since_text = left.text_input("Over the last", "30d", key="replay-since")
threshold_text = mid.text_input("Idle threshold", "10m", key="replay-threshold")
uptime_text = right.text_input("Minimum uptime (blank: current)", "", key="replay-uptime")
if st.button("Replay", icon=":material/history:", key="replay"):
    with guarded("Replay"), st.spinner("Replaying the evaluations…"):
        changes = vm.PolicyChanges(
            idle_seconds=parse_duration(threshold_text, what="threshold", allow_zero=True).total_seconds(),
            min_uptime_seconds=parse_duration(uptime_text, what="minimum uptime", allow_zero=True).total_seconds()
            if uptime_text.strip() else None)
        replayed = vm.replay_policy(me, parse_duration(since_text, what="range"), changes)
        now, then = replayed.current, replayed.candidate
        cols = st.columns(4)
        cols[0].metric("Stops", then.stops, then.stops - now.stops, delta_color="off")
        cols[1].metric("Hours off", f"{then.stopped_hours:,.1f}", f"{then.stopped_hours - now.stopped_hours:+,.1f}")
        cols[2].metric("Saved", fmt.money(then.saved_usd), f"{then.saved_usd - now.saved_usd:+,.2f} $")
        cols[3].metric("Regret", then.regret, then.regret - now.regret, delta_color="inverse")
        st.dataframe(pd.DataFrame([{
            "VM": b.host, "evaluations": b.evaluations, "stops now": len(a.stops), "stops what-if": len(b.stops),
            "hours off now": round(a.stopped_hours, 2), "hours off what-if": round(b.stopped_hours, 2),
            "saved $ now": round(a.saved_usd, 2), "saved $ what-if": round(b.saved_usd, 2),
            "regret now": a.regret, "regret what-if": b.regret,
        } for a, b in zip(now.hosts, then.hosts, strict=True)]), hide_index=True)
        st.caption(f"{fmt.when(replayed.start)} – {fmt.when(replayed.end)}. Assumption: {replayed.assumption}.")

st.subheader("Containers")
with guarded("Containers"):
    containers = vm.list_containers(me)
    if not containers:
        st.info("No containers on this host.")
    else:
        st.dataframe(pd.DataFrame([{
            "name": c.name, "image": c.image, "status": c.status, "health": c.health or "–",
            "uptime": fmt.duration(c.uptime_seconds), "restarts": c.restart_count,
        } for c in containers]), hide_index=True)
        if operator:
            left, mid, right = st.columns([3, 1, 1])
            name = left.selectbox("Container", [c.name for c in containers], key="container-target")
            if mid.button("Restart", icon=":material/restart_alt:", key="container-restart"):
                with guarded("Restart"):
                    vm.restart_container(me, name)
                    flash.flash(f"Restarted {name}.")
                    st.rerun()
            if right.toggle("Logs", key="container-logs"):
                with guarded("Logs"):
                    st.code(vm.container_logs(me, name, tail=200) or "(no output)", language=None, height=360)
