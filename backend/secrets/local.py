"""The embedded secrets store: one Fernet-encrypted JSON document on disk, safe for concurrent processes.

Writers hold an exclusive `flock` on `<store>.lock`, write a temporary file and `os.replace` it, so a reader
always sees a whole document. The whole document is encrypted (names and labels too) and authenticated, so a
tampered file fails to open instead of silently changing a version's state.

The key is configured, never made up here: a key kept beside the data it protects goes wherever a backup or a
copy of the data directory goes. Only the demo generates one (`generated_key`).
"""

from __future__ import annotations

import base64
import copy
import fcntl
import json
import os
import re
import secrets
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from pydantic import SecretBytes, SecretStr

from backend.config import Settings
from backend.errors import ConfigError, Conflict, InvalidInput, NotFound
from backend.secrets.base import SecretsBackend
from backend.secrets.models import (
    Replication,
    SecretMeta,
    SecretPage,
    SecretSpec,
    SecretVersion,
    VersionAction,
    VersionRef,
    VersionState,
)

Document = dict[str, Any]


def _now() -> datetime:
    return datetime.now(UTC)


def _etag() -> str:
    return f'"{secrets.token_hex(8)}"'


def _time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def _iso(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat() if value else None


@dataclass
class _Snapshot:
    stat: tuple[int, int, int]
    doc: Document


def configured_key(settings: Settings) -> SecretStr:
    """The store's key: `SECRETS_LOCAL_KEY`, or the file `SECRETS_LOCAL_KEY_FILE` names (outside the store's
    directory, readable by its owner only). Errors name the settings and paths, never the key."""
    key, key_file = settings.secrets_local_key, settings.secrets_local_key_file
    data_dir = settings.secrets_local_path.resolve().parent
    if key is not None and key_file is not None:
        raise ConfigError("set SECRETS_LOCAL_KEY or SECRETS_LOCAL_KEY_FILE for the local secrets store, not both")
    if key is not None:
        return key
    if key_file is not None:
        return SecretStr(_read_key_file(Path(key_file), data_dir))
    legacy = settings.secrets_local_path.with_suffix(".key")
    hint = (f"; move the key file found beside the store ({legacy}) out of {data_dir} and point "
            "SECRETS_LOCAL_KEY_FILE at it") if legacy.exists() else ""
    raise ConfigError(f"the local secrets store needs a key: set SECRETS_LOCAL_KEY, or SECRETS_LOCAL_KEY_FILE to a "
                      f"mode 0600 file outside {data_dir} (docs/secrets.md){hint}")


def _read_key_file(path: Path, data_dir: Path) -> str:
    where = f"SECRETS_LOCAL_KEY_FILE {path}"
    try:
        info = path.stat()
    except FileNotFoundError:
        raise ConfigError(f"{where} does not exist") from None
    except OSError as exc:
        raise ConfigError(f"{where} cannot be read: {exc.strerror}") from None
    if not stat.S_ISREG(info.st_mode):
        raise ConfigError(f"{where} is not a regular file")
    if path.resolve().is_relative_to(data_dir):
        raise ConfigError(f"{where} is inside {data_dir}, beside the store it protects: keep it outside that directory")
    if info.st_mode & 0o077:
        raise ConfigError(f"{where} has mode {stat.S_IMODE(info.st_mode):04o}: other users may read it; chmod 600 it")
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeError):
        raise ConfigError(f"{where} cannot be read as text: it should hold the key only") from None


def _cipher(key: SecretStr) -> MultiFernet:
    """Several keys (comma- or line-separated) rotate: the first encrypts, all of them decrypt."""
    try:
        return MultiFernet([Fernet(k.encode()) for k in re.split(r"[,\s]+", key.get_secret_value()) if k])
    except (ValueError, TypeError):
        raise ConfigError(
            "the local secrets store's key (SECRETS_LOCAL_KEY or SECRETS_LOCAL_KEY_FILE) is not a valid Fernet key: 32 "
            "url-safe base64-encoded bytes; several keys separated by commas rotate (the first encrypts)"
        ) from None


def generated_key(path: Path) -> SecretStr:
    """The key in `path`, generated there (mode 0600) on first use: for the demo, whose throwaway store may keep
    its key beside it; everything else gets its key from `configured_key`."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return SecretStr(path.read_text(encoding="utf-8").strip())
    key = Fernet.generate_key().decode()
    with os.fdopen(fd, "w") as handle:
        handle.write(key + "\n")
    return SecretStr(key)


class LocalSecretsBackend(SecretsBackend):
    kind = "local"

    def __init__(self, path: Path, key: SecretStr) -> None:
        self.path = Path(path)
        self._lock_path = self.path.with_name(self.path.name + ".lock")
        self._fernet = _cipher(key)
        self._snapshot: _Snapshot | None = None

    # -- storage ----------------------------------------------------------------------------------------

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        with open(self._lock_path, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _read(self) -> Document:
        """The current document, decrypted only when the file changed; callers must not modify it."""
        try:
            stat = os.stat(self.path)
        except FileNotFoundError:
            return {"secrets": {}}
        key = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
        if self._snapshot is None or self._snapshot.stat != key:
            try:
                doc = json.loads(self._fernet.decrypt(self.path.read_bytes()))
            except InvalidToken:
                raise ConfigError(
                    f"the local secrets store {self.path} cannot be decrypted with the configured key "
                    "(SECRETS_LOCAL_KEY or SECRETS_LOCAL_KEY_FILE): wrong key, or the file was altered"
                ) from None
            self._snapshot = _Snapshot(key, doc)
        return self._snapshot.doc

    @staticmethod
    def _expired(entry: dict[str, Any]) -> bool:
        return bool(entry.get("expire_time")) and _time(entry["expire_time"]) <= _now()  # type: ignore[operator]

    def _write(self, doc: Document) -> None:
        token = self._fernet.encrypt(json.dumps(doc, separators=(",", ":")).encode())
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=self.path.name, suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(token)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        stat = os.stat(self.path)
        self._snapshot = _Snapshot((stat.st_ino, stat.st_mtime_ns, stat.st_size), doc)

    @contextmanager
    def _mutate(self) -> Iterator[Document]:
        """Read-modify-write of a private copy under the lock (expired secrets purged); nothing is written if
        the block raises."""
        with self._locked():
            doc = copy.deepcopy(self._read())
            doc["secrets"] = {n: e for n, e in doc["secrets"].items() if not self._expired(e)}
            yield doc
            self._write(doc)

    # -- conversions --------------------------------------------------------------------------------------

    def _entry(self, doc: Document, name: str) -> dict[str, Any]:
        entry = doc["secrets"].get(name)
        if entry is None or self._expired(entry):
            raise NotFound(f"secret {name!r} not found")
        return entry

    @staticmethod
    def _meta(name: str, entry: dict[str, Any]) -> SecretMeta:
        period = entry.get("rotation_period_s")
        return SecretMeta(
            name=name,
            create_time=_time(entry["create_time"]),  # type: ignore[arg-type]
            etag=entry["etag"],
            labels=dict(entry["labels"]),
            replication=Replication(tuple(entry["locations"])),
            expire_time=_time(entry.get("expire_time")),
            rotation_period=timedelta(seconds=period) if period is not None else None,
            next_rotation_time=_time(entry.get("next_rotation_time")),
            topics=tuple(entry.get("topics", ())),
        )

    @staticmethod
    def _version(name: str, raw: dict[str, Any]) -> SecretVersion:
        return SecretVersion(
            secret=name,
            version=raw["version"],
            state=VersionState(raw["state"]),
            create_time=_time(raw["create_time"]),  # type: ignore[arg-type]
            etag=raw["etag"],
            destroy_time=_time(raw.get("destroy_time")),
        )

    @staticmethod
    def _find_version(name: str, entry: dict[str, Any], version: VersionRef) -> dict[str, Any]:
        versions = entry["versions"]
        if version == "latest":
            enabled = [v for v in versions if v["state"] == VersionState.ENABLED]
            if not enabled:
                raise NotFound(f"secret {name!r} has no enabled version")
            return enabled[-1]
        if not 1 <= version <= len(versions):
            raise NotFound(f"secret {name!r} has no version {version}")
        return versions[version - 1]

    # -- operations ---------------------------------------------------------------------------------------

    def list_secrets(
        self, *, labels: dict[str, str] | None = None, page_size: int = 100, page_token: str | None = None
    ) -> SecretPage:
        try:
            after = base64.urlsafe_b64decode(page_token.encode()).decode() if page_token else ""
        except (ValueError, UnicodeError):
            raise InvalidInput("invalid page token: pass the next_page_token of the previous page") from None
        wanted = labels or {}
        doc = self._read()
        names = sorted(
            name for name, entry in doc["secrets"].items()
            if name > after and not self._expired(entry) and all(entry["labels"].get(k) == v for k, v in wanted.items())
        )
        page = names[:page_size]
        token = base64.urlsafe_b64encode(page[-1].encode()).decode() if len(names) > page_size else None
        return SecretPage([self._meta(n, doc["secrets"][n]) for n in page], token)

    def create_secret(self, name: str, spec: SecretSpec) -> SecretMeta:
        with self._mutate() as doc:
            if name in doc["secrets"]:
                raise Conflict(f"secret {name!r} already exists")
            now = _now()
            expire = spec.expire_time or (now + spec.ttl if spec.ttl else None)
            entry = {
                "create_time": _iso(now),
                "etag": _etag(),
                "labels": dict(spec.labels),
                "locations": list(spec.replication.locations),
                "expire_time": _iso(expire),
                "rotation_period_s": spec.rotation_period.total_seconds() if spec.rotation_period else None,
                "next_rotation_time": _iso(spec.next_rotation_time),
                "topics": list(spec.topics),
                "versions": [],
            }
            doc["secrets"][name] = entry
        return self._meta(name, entry)

    def get_secret(self, name: str) -> SecretMeta:
        return self._meta(name, self._entry(self._read(), name))

    def update_labels(self, name: str, labels: dict[str, str], etag: str) -> SecretMeta:
        with self._mutate() as doc:
            entry = self._entry(doc, name)
            self._check_etag(name, entry, etag)
            entry["labels"] = dict(labels)
            entry["etag"] = _etag()
        return self._meta(name, entry)

    @staticmethod
    def _check_etag(name: str, entry: dict[str, Any], etag: str | None) -> None:
        if etag is not None and not secrets.compare_digest(etag, entry["etag"]):
            raise Conflict(f"secret {name!r} was changed by someone else (stale etag): reload it and try again")

    def delete_secret(self, name: str, etag: str | None = None) -> None:
        with self._mutate() as doc:
            self._check_etag(name, self._entry(doc, name), etag)
            del doc["secrets"][name]

    def add_version(self, name: str, data: SecretBytes) -> SecretVersion:
        with self._mutate() as doc:
            entry = self._entry(doc, name)
            raw = {
                "version": len(entry["versions"]) + 1,
                "state": VersionState.ENABLED.value,
                "create_time": _iso(_now()),
                "etag": _etag(),
                "data": base64.b64encode(data.get_secret_value()).decode(),
            }
            entry["versions"].append(raw)
        return self._version(name, raw)

    def list_versions(self, name: str) -> list[SecretVersion]:
        entry = self._entry(self._read(), name)
        return [self._version(name, raw) for raw in reversed(entry["versions"])]

    def get_version(self, name: str, version: VersionRef) -> SecretVersion:
        entry = self._entry(self._read(), name)
        return self._version(name, self._find_version(name, entry, version))

    def access_version(self, name: str, version: VersionRef) -> tuple[int, SecretBytes]:
        raw = self._find_version(name, self._entry(self._read(), name), version)
        if raw["state"] != VersionState.ENABLED:
            raise InvalidInput(f"secret {name!r} version {raw['version']} is {raw['state']}: it cannot be accessed")
        return raw["version"], SecretBytes(base64.b64decode(raw["data"]))

    def set_version_state(self, name: str, version: int, action: VersionAction) -> SecretVersion:
        with self._mutate() as doc:
            raw = self._find_version(name, self._entry(doc, name), version)
            if raw["state"] == VersionState.DESTROYED:
                raise InvalidInput(f"secret {name!r} version {version} is DESTROYED: it cannot be {action}d")
            raw["state"] = {"enable": "ENABLED", "disable": "DISABLED", "destroy": "DESTROYED"}[action]
            if action == "destroy":
                raw["data"] = None
                raw["destroy_time"] = _iso(_now())
            raw["etag"] = _etag()
        return self._version(name, raw)
