"""What changed between two versions of a secret; values stay masked unless revealed.

Masked, a diff says only whether the value changed and the length of each version, except for documents whose
keys are names rather than data: a JSON object (dotted paths for nested keys) or several `NAME=VALUE` lines
(dotenv style), which are compared key by key and show their keys. Revealed, plain text is compared line by line.
"""

from __future__ import annotations

import difflib
import json
import re
from dataclasses import dataclass
from typing import Literal

from pydantic import SecretStr

PayloadFormat = Literal["json", "env", "lines", "text"]
"""`text`: compared as a whole (masked plain text); `lines`: line by line (revealed plain text)."""
ChangeKind = Literal["added", "removed", "changed"]
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*")


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
    changed: bool
    old_length: int
    new_length: int
    """Characters in each version: with `changed`, all that a masked diff of plain text tells."""
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
    """Two or more `NAME=VALUE` lines, read strictly: one line is a value (a URL ending in `?sslmode=…`), and
    base64 ends in `=` or `==`; read as dotenv, either would put part of the secret on screen as a "name"."""
    pairs: dict[str, str] = {}
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        name, sep, value = (part.strip() for part in stripped.removeprefix("export ").partition("="))
        padding = value.startswith("=") or (not value and name != name.upper())
        if not sep or not _ENV_NAME.fullmatch(name) or padding:
            return None
        pairs[name] = value
    return pairs if len(pairs) >= 2 else None


def _parse(text: str) -> tuple[PayloadFormat, dict[str, str] | None]:
    for fmt, parser in (("json", _as_json), ("env", _as_env)):
        parsed = parser(text)
        if parsed is not None:
            return fmt, parsed  # type: ignore[return-value]
    return "text", None


def _secret(value: str | None) -> SecretStr | None:
    return SecretStr(value) if value is not None else None


def _keyed_changes(old: dict[str, str], new: dict[str, str], reveal: bool) -> list[Change]:
    changes = []
    for key in sorted(old.keys() | new.keys()):
        before, after = old.get(key), new.get(key)
        if before == after:
            continue
        kind: ChangeKind = "added" if before is None else "removed" if after is None else "changed"
        changes.append(Change(key, kind, *((_secret(before), _secret(after)) if reveal else (None, None))))
    return changes


def _line_changes(old: str, new: str) -> list[Change]:
    """Line by line, with values: only for a revealed diff (line numbers of a masked one would map the secret)."""
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
            changes.append(Change(f"line {line}", kind, _secret(before), _secret(after)))
    return changes


def diff_payloads(
    secret: str, old_version: int, old: SecretStr, new_version: int, new: SecretStr, *, reveal: bool = False
) -> SecretDiff:
    """Key by key when both payloads are the same kind of keyed document, else as text (by line if revealed)."""
    old_text, new_text = old.get_secret_value(), new.get_secret_value()
    old_fmt, old_keys = _parse(old_text)
    new_fmt, new_keys = _parse(new_text)
    fmt: PayloadFormat
    if old_fmt == new_fmt and old_keys is not None and new_keys is not None:
        fmt, changes = old_fmt, _keyed_changes(old_keys, new_keys, reveal)
    elif reveal:
        fmt, changes = "lines", _line_changes(old_text, new_text)
    else:
        fmt, changes = "text", []
    return SecretDiff(secret, old_version, new_version, fmt, changed=old_text != new_text,
                      old_length=len(old_text), new_length=len(new_text), changes=changes, revealed=reveal)
