"""The pages and the least role each needs. Navigation lists only what the principal may use; the backend
services check roles again, so hiding a page is convenience, not the security boundary."""

from __future__ import annotations

from dataclasses import dataclass

import streamlit as st

from backend.identity.principal import Principal, Role


@dataclass(frozen=True)
class PageSpec:
    file: str
    title: str
    icon: str
    minimum: Role
    section: str

    @property
    def path(self) -> str:
        """Relative to `app/main.py`, as `st.Page` and `AppTest.switch_page` want it."""
        return f"../pages/{self.file}"


PAGES: tuple[PageSpec, ...] = (
    PageSpec("overview.py", "Overview", ":material/dashboard:", Role.viewer, "Fleet"),
    PageSpec("gpu_health.py", "GPU Health", ":material/monitor_heart:", Role.viewer, "Fleet"),
    PageSpec("gpu_detail.py", "GPU Detail", ":material/memory:", Role.viewer, "Fleet"),
    PageSpec("alerts.py", "Alerts", ":material/notifications:", Role.viewer, "Fleet"),
    PageSpec("costs.py", "Costs", ":material/payments:", Role.viewer, "Fleet"),
    PageSpec("streams.py", "Streams", ":material/videocam:", Role.viewer, "Operations"),
    PageSpec("vms.py", "VMs", ":material/dns:", Role.viewer, "Operations"),
    PageSpec("pipeline.py", "Pipeline", ":material/conveyor_belt:", Role.viewer, "Operations"),
    PageSpec("secrets.py", "Secrets", ":material/key:", Role.operator, "Admin"),
)
BY_FILE = {spec.file: spec for spec in PAGES}


def allowed(principal: Principal) -> list[PageSpec]:
    return [spec for spec in PAGES if principal.has(spec.minimum)]


def navigation(principal: Principal) -> st.navigation:  # type: ignore[valid-type]
    sections: dict[str, list[st.Page]] = {}
    for spec in allowed(principal):
        page = st.Page(spec.path, title=spec.title, icon=spec.icon, default=spec.file == "overview.py")
        sections.setdefault(spec.section, []).append(page)
    return st.navigation(sections)


def link(principal: Principal, file: str, label: str | None = None, **query: str) -> None:
    """A link to another page, carrying query parameters; nothing when the principal may not open that page."""
    spec = BY_FILE[file]
    if principal.has(spec.minimum):
        st.page_link(spec.path, label=label or spec.title, icon=spec.icon, query_params=query or None)
