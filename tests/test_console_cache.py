"""The console's cache for service reads keys answers by the acting principal's name and role."""

from __future__ import annotations

from pathlib import Path

import pytest
import streamlit as st

from backend.identity.principal import Principal, Role


@pytest.fixture
def cached(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parent.parent / "app"))
    from components.cache import cached

    st.cache_data.clear()
    yield cached
    st.cache_data.clear()


def test_answers_are_cached_per_principal_name_and_role(cached) -> None:
    calls: list[tuple[str, str]] = []

    @cached(ttl=60)
    def read(who: Principal, what: str) -> str:
        calls.append((who.name, what))
        return f"{who.name}:{what}"

    alice = Principal("alice", Role.viewer)
    assert read(alice, "fleet") == read(Principal("alice", Role.viewer), "fleet") == "alice:fleet"
    assert read(Principal("alice", Role.admin), "fleet") == "alice:fleet"
    assert read(Principal("bob", Role.viewer), "fleet") == "bob:fleet"
    assert read(alice, "spend") == "alice:spend"
    assert calls == [("alice", "fleet"), ("alice", "fleet"), ("bob", "fleet"), ("alice", "spend")]
