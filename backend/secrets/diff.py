"""What changed between two versions of a secret, as keys or line numbers; values stay masked unless revealed.

Payloads are read as a JSON object (dotted paths for nested keys), as `KEY=VALUE` lines (dotenv style), or
otherwise as plain lines.
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass
from typing import Literal

from pydantic import SecretStr

PayloadFormat = Literal["json", "env", "lines"]
ChangeKind = Literal["added", "removed", "changed"]


@dataclass(frozen=True)
class Change:
    key: str
    """The JSON path or KEY that changed, or `line N` (N in the newer version, or the older one if removed)."""
    kind: ChangeKind
    old: SecretStr | None = None
    new: SecretStr | None = None


@dataclass(frozen=True)
class SecretDiff:
    secret: str
    old_version: int
    new_version: int
    format: PayloadFormat
    changes: list[Change]
    revealed: bool


def _flatten(value: object, prefix: str = "") -> dict[str, str]:
    if isinstance(value, dict) and value:
        flat: dict[str, str] = {}
        for key, item in value.items():
            flat.update(_flatten(item, f"{prefix}.{key}" if prefix else str(key)))
        return flat
    return {prefix or "$": json.dumps(value, sort_keys=True)}


def _as_json(text: str) -> dict[str, str] | None:
    try:
        parsed = json.loads(text)
    except ValueError:
        return None
    return _flatten(parsed) if isinstance(parsed, dict) else None


def _as_env(text: str) -> dict[str, str] | None:
    pairs: dict[str, str] = {}
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        key, sep, value = stripped.removeprefix("export ").partition("=")
        if not sep or not key.strip() or " " in key.strip():
            return None
        pairs[key.strip()] = value.strip()
    return pairs or None


def _parse(text: str) -> tuple[PayloadFormat, dict[str, str] | None]:
    for fmt, parser in (("json", _as_json), ("env", _as_env)):
        parsed = parser(text)
        if parsed is not None:
            return fmt, parsed  # type: ignore[return-value]
    return "lines", None


def _mask(value: str | None, reveal: bool) -> SecretStr | None:
    return SecretStr(value) if reveal and value is not None else None


def _keyed_changes(old: dict[str, str], new: dict[str, str], reveal: bool) -> list[Change]:
    changes = []
    for key in sorted(old.keys() | new.keys()):
        before, after = old.get(key), new.get(key)
        if before == after:
            continue
        kind: ChangeKind = "added" if before is None else "removed" if after is None else "changed"
        changes.append(Change(key, kind, _mask(before, reveal), _mask(after, reveal)))
    return changes


def _line_changes(old: str, new: str, reveal: bool) -> list[Change]:
    a, b = old.splitlines(), new.splitlines()
    changes = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes():
        if tag == "equal":
            continue
        for offset in range(max(i2 - i1, j2 - j1)):
            before = a[i1 + offset] if i1 + offset < i2 else None
            after = b[j1 + offset] if j1 + offset < j2 else None
            kind: ChangeKind = "added" if before is None else "removed" if after is None else "changed"
            line = j1 + offset + 1 if after is not None else i1 + offset + 1
            changes.append(Change(f"line {line}", kind, _mask(before, reveal), _mask(after, reveal)))
    return changes


def diff_payloads(
    secret: str, old_version: int, old: SecretStr, new_version: int, new: SecretStr, *, reveal: bool = False
) -> SecretDiff:
    """Compare two payloads in the richest format both parse as."""
    old_text, new_text = old.get_secret_value(), new.get_secret_value()
    old_fmt, old_keys = _parse(old_text)
    new_fmt, new_keys = _parse(new_text)
    if old_fmt == new_fmt and old_keys is not None and new_keys is not None:
        changes = _keyed_changes(old_keys, new_keys, reveal)
        fmt: PayloadFormat = old_fmt
    else:
        changes, fmt = _line_changes(old_text, new_text, reveal), "lines"
    return SecretDiff(secret, old_version, new_version, fmt, changes, reveal)
