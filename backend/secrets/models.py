"""The shapes the secrets area exchanges at its boundaries; values travel only inside masked `SecretStr`."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Literal

from pydantic import SecretStr

from backend.errors import InvalidInput

# Checked with fullmatch: `re.match("^…$")` would accept a trailing newline.
_NAME = re.compile(r"[A-Za-z0-9_-]{1,255}")
_LABEL_KEY = re.compile(r"[a-z][a-z0-9_-]{0,62}")
_LABEL_VALUE = re.compile(r"[a-z0-9_-]{0,63}")

VersionRef = int | Literal["latest"]
VersionAction = Literal["enable", "disable", "destroy"]
"""A version number, or `latest`: the newest ENABLED version (as in Secret Manager)."""


class VersionState(StrEnum):
    ENABLED = "ENABLED"
    DISABLED = "DISABLED"
    DESTROYED = "DESTROYED"


@dataclass(frozen=True)
class Replication:
    """Automatic (Google picks the regions) or user-managed with explicit locations."""

    locations: tuple[str, ...] = ()

    @property
    def automatic(self) -> bool:
        return not self.locations

    def describe(self) -> str:
        return "automatic" if self.automatic else "user-managed: " + ", ".join(self.locations)


@dataclass(frozen=True)
class SecretSpec:
    """What a new secret is created with (everything but its value)."""

    labels: dict[str, str] = field(default_factory=dict)
    replication: Replication = Replication()
    expire_time: datetime | None = None
    ttl: timedelta | None = None
    rotation_period: timedelta | None = None
    next_rotation_time: datetime | None = None
    topics: tuple[str, ...] = ()
    """Pub/Sub topics for rotation notices: Secret Manager requires at least one when rotation is set."""


@dataclass(frozen=True)
class SecretMeta:
    name: str
    create_time: datetime
    etag: str
    labels: dict[str, str]
    replication: Replication
    expire_time: datetime | None = None
    rotation_period: timedelta | None = None
    next_rotation_time: datetime | None = None
    topics: tuple[str, ...] = ()


@dataclass(frozen=True)
class SecretVersion:
    secret: str
    version: int
    state: VersionState
    create_time: datetime
    etag: str
    destroy_time: datetime | None = None


@dataclass(frozen=True)
class SecretPage:
    secrets: list[SecretMeta]
    next_page_token: str | None = None


@dataclass(frozen=True)
class SecretDetails:
    """A secret's metadata and all its versions, newest first."""

    meta: SecretMeta
    versions: list[SecretVersion]


@dataclass(frozen=True)
class RevealedSecret:
    """A version's value; `value` prints as `**********` until `.get_secret_value()` is called."""

    secret: str
    version: int
    value: SecretStr


def check_name(name: str) -> str:
    if not _NAME.fullmatch(name or ""):
        raise InvalidInput(
            f"invalid secret name {name!r}: use 1-255 letters, digits, '_' or '-'"
        )
    return name


def check_labels(labels: dict[str, str]) -> dict[str, str]:
    if len(labels) > 64:
        raise InvalidInput("too many labels: at most 64")
    for key, value in labels.items():
        if not _LABEL_KEY.fullmatch(key):
            raise InvalidInput(
                f"invalid label key {key!r}: 1-63 lower-case letters, digits, '_' or '-', starting with a letter"
            )
        if not _LABEL_VALUE.fullmatch(value):
            raise InvalidInput(f"invalid value for label {key!r}: 0-63 lower-case letters, digits, '_' or '-'")
    return dict(labels)


def parse_version(value: str | int) -> VersionRef:
    """`latest` or a positive version number, from a CLI argument or a form."""
    if isinstance(value, int) or str(value).isdigit():
        number = int(value)
        if number < 1:
            raise InvalidInput("version numbers start at 1")
        return number
    if str(value) == "latest":
        return "latest"
    raise InvalidInput(f"invalid version {value!r}: a number or 'latest'")
