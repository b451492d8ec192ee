"""Secrets: admins create, version, reveal, diff and delete; operators see names and metadata only.

The service checks the role and audits every call; this page only hides controls a role cannot use. Revealed
values (a version, or a diff's values) are never cached or kept in the session: they show in the run whose button
revealed them, and the next run, at the latest the reveal fragment's timer, shows them no more.
"""

from __future__ import annotations

from datetime import timedelta

import pandas as pd
import streamlit as st
from components import flash, fmt
from components.errors import boundary, guarded
from components.session import principal

from backend.identity.principal import Role
from backend.parsing import parse_labels
from backend.secrets import models
from backend.secrets import service as secrets_service

REVEAL_SECONDS = 20
me = principal()
admin = me.has(Role.admin)
service = secrets_service.get_service()


@st.cache_data(ttl=30, show_spinner=False)
def _secrets(who: str, labels: tuple[tuple[str, str], ...]) -> list:
    """Metadata only (never values); keyed by user and filter; cleared after every change."""
    return service.list_all(me, labels=dict(labels) or None)


def _changed(message: str) -> None:
    """After a change: forget cached metadata, rerun, and say what happened at the top of the next run."""
    _secrets.clear()
    flash.flash(message)
    st.rerun()


st.title("Secrets")
flash.show()
st.caption(f"Backend: {service.backend.kind}. " + ("You can change and reveal secrets." if admin else
           "Read-only: names and metadata. Only admins change or reveal values."))

with guarded("Rotation"):
    due = service.rotation_due(me, within=timedelta(days=7))
    if due:
        st.warning(f"{len(due)} secret(s) due for rotation within 7 days", icon=":material/autorenew:")
        st.dataframe(pd.DataFrame([{
            "secret": d.secret, "due": fmt.when(d.due_at), "overdue": d.overdue,
            "latest version": d.latest_version, "age": fmt.duration(d.age),
        } for d in due]), hide_index=True)

left, right = st.columns([2, 1])
with left:
    name_filter = st.text_input("Filter by name", placeholder="part of a name", key="secret-name-filter")
with right:
    label_filter = st.text_input("Labels", placeholder="env=prod, team=video", key="secret-label-filter")

metas: list = []
with guarded("Secrets"):
    pairs = [p.strip() for p in label_filter.split(",") if p.strip()]
    labels = tuple(sorted(parse_labels(pairs).items()))
    metas = [m for m in _secrets(me.name, labels) if name_filter.lower() in m.name.lower()]
    if metas:
        st.dataframe(pd.DataFrame([{
            "name": m.name, "created": fmt.when(m.create_time),
            "labels": ", ".join(f"{k}={v}" for k, v in sorted(m.labels.items())),
            "replication": m.replication.describe(),
            "rotation": fmt.duration(m.rotation_period) if m.rotation_period else "–",
            "expires": fmt.when(m.expire_time),
        } for m in metas]), hide_index=True)
    else:
        st.info("No secrets match." + (" Create one below." if admin else ""), icon=":material/key_off:")

if admin:
    with st.expander("Create a secret", icon=":material/add:"), st.form("create-secret", clear_on_submit=True):
        new_name = st.text_input("Name", help="letters, digits, '_' or '-'")
        multiline = st.checkbox("Multi-line value (visible while typing)")
        value = st.text_area("Value") if multiline else st.text_input("Value", type="password")
        new_labels = st.text_input("Labels", placeholder="env=prod, team=video")
        rotation_days = st.number_input("Rotate every (days, 0 = no rotation)", min_value=0, value=0)
        if st.form_submit_button("Create", type="primary"):
            with guarded("Create"):
                spec = models.SecretSpec(
                    labels=parse_labels([p.strip() for p in new_labels.split(",") if p.strip()]),
                    rotation_period=timedelta(days=rotation_days) if rotation_days else None,
                )
                service.create(me, new_name.strip(), spec, value or None)
                _changed(f"created secret {new_name.strip()}")


@st.fragment(run_every=REVEAL_SECONDS)
@boundary("Reveal")
def reveal_panel(name: str, versions: list[int]) -> None:
    """The value appears only in the run its button started; the fragment's timer reruns it, hiding it again."""
    choice = st.selectbox("Version to reveal", ["latest", *versions], key=f"reveal-version-{name}")
    if st.button("Reveal value", icon=":material/visibility:", key=f"reveal-{name}"):
        with guarded("Reveal"):
            revealed = service.reveal(me, name, models.parse_version(choice))
            st.code(revealed.value.get_secret_value(), language=None)
            st.caption(f"Version {revealed.version}. Audited. Hidden again within {REVEAL_SECONDS} s or on any "
                       "other action.")


def diff_view(diff: object) -> None:
    """Keyed documents list their changed keys (and values, when revealed); plain text says only that it changed
    and how long each version is."""
    if not diff.changed:
        st.info("The two versions hold the same value.")
        return
    st.caption(f"Changed ({diff.format}): version {diff.old_version} has {diff.old_length} characters, version "
               f"{diff.new_version} has {diff.new_length}")
    if diff.changes:
        st.dataframe(pd.DataFrame([
            {"key": ch.key, "change": ch.kind} | ({
                "old": ch.old.get_secret_value() if ch.old else "", "new": ch.new.get_secret_value() if ch.new else "",
            } if diff.revealed else {}) for ch in diff.changes]), hide_index=True)


@st.fragment(run_every=REVEAL_SECONDS)
@boundary("Diff values")
def diff_values_panel(name: str, old: int, new: int) -> None:
    """Like `reveal_panel`: values only in the run the button started, so neither a rerun nor the timer that hides
    them reveals (and audits) them again."""
    if st.button("Show values (audited)", icon=":material/visibility:", key=f"reveal-diff-{name}"):
        diff_view(service.diff(me, name, old, new, reveal=True))
        st.caption(f"Audited. Hidden again within {REVEAL_SECONDS} s or on any other action.")


def versions_panel(name: str) -> None:
    details = service.describe(me, name)
    meta = details.meta
    st.markdown(f"**{meta.name}** · etag `{meta.etag}` · created {fmt.when(meta.create_time)}")
    st.dataframe(pd.DataFrame([{
        "version": v.version, "state": str(v.state), "created": fmt.when(v.create_time),
        "destroyed": fmt.when(v.destroy_time),
    } for v in details.versions]), hide_index=True)
    if not admin:
        return
    numbers = [v.version for v in details.versions]
    reveal_tab, change_tab, diff_tab, audit_tab, delete_tab = st.tabs(
        ["Reveal", "Versions", "Diff", "Audit", "Delete"])
    with reveal_tab:
        reveal_panel(name, numbers)
    with change_tab:
        with st.form(f"add-version-{name}", clear_on_submit=True):
            value = st.text_input("New value", type="password")
            if st.form_submit_button("Add version"):
                with guarded("Add version"):
                    created = service.add_version(me, name, value)
                    _changed(f"added version {created.version}")
        if numbers:
            version = st.selectbox("Version", numbers, key=f"state-version-{name}")
            cols = st.columns(3)
            for col, (label, call) in zip(cols, (("Disable", service.disable_version),
                                                 ("Enable", service.enable_version),
                                                 ("Destroy", service.destroy_version)), strict=True):
                if col.button(label, key=f"{label}-{name}", type="secondary"):
                    with guarded(label):
                        call(me, name, version)
                        _changed(f"{label.lower()}d version {version}")
    with diff_tab:
        if len(numbers) < 2:
            st.info("Add a second version to compare.")
        else:
            a, b = st.columns(2)
            old = a.selectbox("Older", numbers[1:], key=f"diff-old-{name}")
            new = b.selectbox("Newer", numbers, key=f"diff-new-{name}")
            with guarded("Diff"):
                diff_view(service.diff(me, name, old, new))
            diff_values_panel(name, old, new)
    with audit_tab:
        entries = service.audit_entries(me, secret=name, limit=100)
        st.dataframe(pd.DataFrame([{"at": fmt.when(e.at), "actor": e.actor, "action": e.action,
                                    "outcome": e.outcome, "version": e.detail.get("version")} for e in entries]),
                     hide_index=True)
    with delete_tab:
        st.warning("Deleting removes every version for good.", icon=":material/warning:")
        typed = st.text_input(f"Type {name} to confirm", key=f"delete-confirm-{name}")
        if st.button("Delete secret", type="primary", disabled=typed != name, key=f"delete-{name}"):
            with guarded("Delete"):
                service.delete(me, name, meta.etag)
                _changed(f"deleted secret {name}")


if metas:
    st.subheader("Details")
    selected = st.selectbox("Secret", [m.name for m in metas], key="secret-selected")
    with guarded("Details"):
        versions_panel(selected)

if admin:
    with st.expander("Audit log (all secrets)", icon=":material/history:"), guarded("Audit"):
        st.dataframe(pd.DataFrame([{"at": fmt.when(e.at), "actor": e.actor, "action": e.action,
                                    "secret": e.target, "outcome": e.outcome}
                                   for e in service.audit_entries(me, limit=200)]), hide_index=True)
