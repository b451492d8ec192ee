"""The local store on disk: encrypted and authenticated, key handling, key rotation, concurrent writers."""

from __future__ import annotations

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from pydantic import SecretBytes, SecretStr

from backend.config import ConfigError
from backend.secrets.local import LocalSecretsBackend
from backend.secrets.models import SecretSpec


def test_wrong_key_and_tampering_fail_loudly(tmp_path: Path) -> None:
    path = tmp_path / "store.json"
    store = LocalSecretsBackend(path, SecretStr(Fernet.generate_key().decode()))
    store.create_secret("name-visible-only-inside", SecretSpec(labels={"env": "prod"}))
    assert b"name-visible-only-inside" not in path.read_bytes()

    with pytest.raises(ConfigError, match="cannot be decrypted with the configured key"):
        LocalSecretsBackend(path, SecretStr(Fernet.generate_key().decode())).list_secrets()
    raw = bytearray(path.read_bytes())
    raw[40] = ord("A") if raw[40] != ord("A") else ord("B")
    path.write_bytes(bytes(raw))
    with pytest.raises(ConfigError, match="altered"):
        LocalSecretsBackend(path, store._configured_key).list_secrets()
    with pytest.raises(ConfigError, match="not a valid Fernet key"):
        LocalSecretsBackend(path, SecretStr("too-short")).list_secrets()


def test_key_rotation_with_several_keys(tmp_path: Path) -> None:
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    path = tmp_path / "store.json"
    LocalSecretsBackend(path, SecretStr(old)).create_secret("a", SecretSpec())
    rotated = LocalSecretsBackend(path, SecretStr(f"{new},{old}"))
    assert [m.name for m in rotated.list_secrets().secrets] == ["a"]  # the old key still reads
    rotated.add_version("a", SecretBytes(b"v"))  # the write re-encrypts with the new key
    assert LocalSecretsBackend(path, SecretStr(new)).access_version("a", 1)[1].get_secret_value() == b"v"


def test_concurrent_writers_lose_nothing(tmp_path: Path) -> None:
    path = tmp_path / "store.json"
    key = Fernet.generate_key().decode()
    LocalSecretsBackend(path, SecretStr(key)).create_secret("counter", SecretSpec())
    code = (
        "import sys; from pydantic import SecretBytes, SecretStr; "
        "from backend.secrets.local import LocalSecretsBackend as B; "
        "b = B(sys.argv[1], SecretStr(sys.argv[2])); "
        "[b.add_version('counter', SecretBytes(b'p')) for _ in range(10)]"
    )
    procs = [subprocess.Popen([sys.executable, "-c", code, str(path), key]) for _ in range(3)]
    local = LocalSecretsBackend(path, SecretStr(key))
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda _: local.add_version("counter", SecretBytes(b"t")), range(10)))
    assert all(p.wait(timeout=60) == 0 for p in procs)
    versions = LocalSecretsBackend(path, SecretStr(key)).list_versions("counter")
    assert [v.version for v in versions] == list(range(40, 0, -1))
