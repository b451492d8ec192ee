"""The local store on disk: encrypted and authenticated, where its key may come from, key rotation, concurrent
writers."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from pydantic import SecretBytes, SecretStr
from typer.testing import CliRunner

from backend import demo
from backend.cli import app
from backend.config import Settings, get_settings
from backend.errors import ConfigError
from backend.secrets.backends import backend_for
from backend.secrets.local import LocalSecretsBackend
from backend.secrets.models import SecretSpec
from backend.settings_loader import load_settings


def test_wrong_key_and_tampering_fail_loudly(tmp_path: Path) -> None:
    path = tmp_path / "store.json"
    key = SecretStr(Fernet.generate_key().decode())
    LocalSecretsBackend(path, key).create_secret("name-visible-only-inside", SecretSpec(labels={"env": "prod"}))
    assert b"name-visible-only-inside" not in path.read_bytes()

    with pytest.raises(ConfigError, match="cannot be decrypted with the configured key"):
        LocalSecretsBackend(path, SecretStr(Fernet.generate_key().decode())).list_secrets()
    raw = bytearray(path.read_bytes())
    raw[40] = ord("A") if raw[40] != ord("A") else ord("B")
    path.write_bytes(bytes(raw))
    with pytest.raises(ConfigError, match="altered"):
        LocalSecretsBackend(path, key).list_secrets()
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


def _settings(tmp_path: Path, **values: object) -> Settings:
    """Only the key settings given here (not the test session's SECRETS_LOCAL_KEY)."""
    keys = {"secrets_local_key": None, "secrets_local_key_file": None, **values}
    return Settings(secrets_local_path=tmp_path / "data" / "secrets.json", **keys)  # type: ignore[arg-type]


def _key_file(path: Path, key: str, mode: int = 0o600) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(key + "\n", encoding="utf-8")
    path.chmod(mode)
    return path


def _refusal(settings: Settings) -> str:
    with pytest.raises(ConfigError) as refused:
        backend_for(settings)
    message = str(refused.value)
    assert "\n" not in message, "one line"
    return message


def test_without_a_configured_key_the_store_refuses_to_open(tmp_path: Path) -> None:
    message = _refusal(_settings(tmp_path))
    assert "SECRETS_LOCAL_KEY" in message and "SECRETS_LOCAL_KEY_FILE" in message
    assert not (tmp_path / "data").exists(), "no key (and no store) is made up next to the data"


def test_a_key_file_must_be_outside_the_data_directory_and_private(tmp_path: Path) -> None:
    key = Fernet.generate_key().decode()
    beside = _key_file(tmp_path / "data" / "secrets.key", key)
    assert "outside" in _refusal(_settings(tmp_path, secrets_local_key_file=beside))
    nested = _key_file(tmp_path / "data" / "keys" / "local.key", key)
    assert "outside" in _refusal(_settings(tmp_path, secrets_local_key_file=nested))
    shared = _key_file(tmp_path / "keys" / "shared.key", key, mode=0o644)
    assert "chmod 600" in _refusal(_settings(tmp_path, secrets_local_key_file=shared))
    assert "does not exist" in _refusal(_settings(tmp_path, secrets_local_key_file=tmp_path / "keys" / "none"))
    both = _settings(tmp_path, secrets_local_key=SecretStr(key), secrets_local_key_file=_key_file(
        tmp_path / "keys" / "local.key", key))
    assert "not both" in _refusal(both)

    wrong = _key_file(tmp_path / "keys" / "wrong.key", "not-a-fernet-key-2b7e")
    for settings in (_settings(tmp_path, secrets_local_key_file=wrong),
                     _settings(tmp_path, secrets_local_key=SecretStr("not-a-fernet-key-2b7e"))):
        message = _refusal(settings)
        assert "not a valid Fernet key" in message and "2b7e" not in message

    private = _key_file(tmp_path / "keys" / "private.key", key)
    before = set((tmp_path / "data").iterdir())
    backend_for(_settings(tmp_path, secrets_local_key_file=private)).create_secret("kept", SecretSpec())
    again = LocalSecretsBackend(tmp_path / "data" / "secrets.json", SecretStr(key))
    assert [m.name for m in again.list_secrets().secrets] == ["kept"]
    assert {p.name for p in set((tmp_path / "data").iterdir()) - before} == {"secrets.json", "secrets.json.lock"}


def test_a_key_that_older_versions_left_beside_the_store_is_named_in_the_refusal(tmp_path: Path) -> None:
    _key_file(tmp_path / "data" / "secrets.key", Fernet.generate_key().decode())
    message = _refusal(_settings(tmp_path))
    assert str(tmp_path / "data" / "secrets.key") in message and "SECRETS_LOCAL_KEY_FILE" in message


def test_the_cli_refuses_to_start_with_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SECRETS_LOCAL_KEY", raising=False)
    monkeypatch.setenv("SECRETS_LOCAL_PATH", str(tmp_path / "data" / "secrets.json"))
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(app, ["secrets", "list"])
    finally:
        get_settings.cache_clear()
    assert result.exit_code != 0 and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1 and "SECRETS_LOCAL_KEY_FILE" in result.output


def test_the_demo_generates_and_keeps_its_own_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SECRETS_LOCAL_KEY", raising=False)
    monkeypatch.setenv("SECRETS_LOCAL_PATH", str(tmp_path / "secrets.json"))
    demo.use_demo_secrets_key(tmp_path)
    key_file = tmp_path / "secrets.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert os.environ["SECRETS_LOCAL_KEY"] == key_file.read_text(encoding="utf-8").strip()
    backend_for(load_settings()).create_secret("demo", SecretSpec())

    monkeypatch.delenv("SECRETS_LOCAL_KEY")
    demo.use_demo_secrets_key(tmp_path)  # the next `make demo` reads the same store with the same key
    assert [m.name for m in backend_for(load_settings()).list_secrets().secrets] == ["demo"]

    configured = Fernet.generate_key().decode()
    monkeypatch.setenv("SECRETS_LOCAL_KEY", configured)
    demo.use_demo_secrets_key(tmp_path)
    assert os.environ["SECRETS_LOCAL_KEY"] == configured, "a configured key is never replaced"


def test_api_serve_refuses_to_start_without_a_key(tmp_path, monkeypatch):
    monkeypatch.delenv("SECRETS_LOCAL_KEY", raising=False)
    monkeypatch.delenv("SECRETS_LOCAL_KEY_FILE", raising=False)
    monkeypatch.setenv("SECRETS_LOCAL_PATH", str(tmp_path / "store" / "secrets.json"))
    get_settings.cache_clear()
    result = CliRunner().invoke(app, ["api", "serve", "--port", "1"])
    get_settings.cache_clear()
    assert result.exit_code == 2, result.output
    assert "SECRETS_LOCAL_KEY" in result.output and "Traceback" not in result.output
