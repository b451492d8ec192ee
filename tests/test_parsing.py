"""The shared grammars: one duration syntax and one `key=value` label syntax for every area."""

from __future__ import annotations

from datetime import timedelta

import pytest

from backend.errors import InvalidInput
from backend.parsing import parse_duration, parse_labels


@pytest.mark.parametrize(("text", "expected"), [
    ("90s", timedelta(seconds=90)), ("12h", timedelta(hours=12)), ("7d", timedelta(days=7)),
    ("2w", timedelta(weeks=2)), ("1d12h", timedelta(hours=36)), ("1h30m", timedelta(minutes=90)),
    ("250ms", timedelta(milliseconds=250)), (" 30M ", timedelta(minutes=30)), ("1.5h", timedelta(minutes=90)),
])
def test_durations(text, expected):
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "7", "0d", "-1d", "7 days", "1y", "1h 30m", "h1", "7d\n1h"])
def test_bad_durations_are_explained(text):
    with pytest.raises(InvalidInput, match="invalid duration"):
        parse_duration(text)


def test_bare_seconds_and_zero_only_where_allowed():
    assert parse_duration("2.5", bare_seconds=True) == timedelta(seconds=2.5)
    assert parse_duration("0m", allow_zero=True) == timedelta(0)
    with pytest.raises(InvalidInput, match="invalid --interval '0': must be more than zero"):
        parse_duration("0", what="--interval", bare_seconds=True)
    with pytest.raises(InvalidInput, match="or plain seconds"):
        parse_duration("x", what="--interval", bare_seconds=True)


def test_labels_are_split_and_trimmed_and_a_pair_without_a_key_is_refused():
    assert parse_labels(["team=news", " env = prod ", "empty="]) == {"team": "news", "env": "prod", "empty": ""}
    for bad in ("team", "=news"):
        with pytest.raises(InvalidInput, match=f"invalid label '{bad}': use key=value"):
            parse_labels([bad])
