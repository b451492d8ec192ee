"""`secret:NAME[#VERSION]` settings resolved at load time, through either backend."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
from pydantic import SecretStr

from backend.config import Settings, get_settings
from backend.errors import ConfigError
from backend.identity.principal import SYSTEM
from backend.secrets.service import SecretsService
from backend.settings_loader import load_settings
from tests.fakes.secret_manager import FakeSecretManager


def test_text_and_password_settings_resolve(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    svc = SecretsService(settings)
    svc.create(SYSTEM, "kafka-password", value="pw-one")
    svc.add_version(SYSTEM, "kafka-password", "pw-two")
    svc.create(SYSTEM, "api-url", value="https://ops.example.com")
    monkeypatch.setenv("KAFKA_SASL_PASSWORD", "secret:kafka-password")
    monkeypatch.setenv("API_BASE_URL", "secret:api-url#1")
    monkeypatch.setenv("KAFKA_SASL_USERNAME", "secret:kafka-password#1")

    loaded = load_settings()
    assert isinstance(loaded.kafka_sasl_password, SecretStr)
    assert loaded.kafka_sasl_password.get_secret_value() == "pw-two"  # no version: latest
    assert loaded.kafka_sasl_username == "pw-one"  # pinned version
    assert loaded.api_base_url == "https://ops.example.com"
    assert "pw-two" not in repr(loaded)


def test_unresolvable_reference_is_a_clear_error(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ADMIN_PASSWORD", "secret:nope")
    with pytest.raises(ConfigError, match=r"ADMIN_PASSWORD=secret:nope cannot be resolved: secret 'nope' not found"):
        load_settings()
    monkeypatch.setenv("ADMIN_PASSWORD", "secret:bad name")
    with pytest.raises(ConfigError, match="invalid secret name"):
        load_settings()


def test_backend_settings_cannot_be_references(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SECRETS_LOCAL_KEY", "secret:key")
    with pytest.raises(ConfigError, match="SECRETS_LOCAL_KEY cannot reference a secret"):
        load_settings()


def test_database_url_from_secret_manager(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeSecretManager(project="refs").start()
    try:
        monkeypatch.setenv("SECRETS_BACKEND", "gcp")
        monkeypatch.setenv("GCP_PROJECT_ID", "refs")
        monkeypatch.setenv("SECRET_MANAGER_ENDPOINT", fake.endpoint)
        get_settings.cache_clear()
        SecretsService(get_settings()).create(SYSTEM, "database-url", value=settings.database_url)
        monkeypatch.setenv("DATABASE_URL", "secret:database-url")
        get_settings.cache_clear()

        resolved = get_settings()
        assert resolved.database_url == settings.database_url
        assert "AccessSecretVersion" in fake.calls
        with psycopg.connect(resolved.require_database_url()) as conn:
            assert conn.execute("SELECT count(*) FROM audit_log WHERE area = 'secrets'").fetchone()[0] >= 1
    finally:
        get_settings.cache_clear()
        fake.stop()


def test_the_cli_resolves_references_in_its_own_process(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    SecretsService(settings).create(SYSTEM, "database-url", value=settings.database_url)
    monkeypatch.setenv("DATABASE_URL", "secret:database-url")
    cli = Path(sys.executable).with_name("stream-platform")
    result = subprocess.run([str(cli), "db", "status", "--json"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["pending"] == []


def test_a_process_without_the_settings_loader_refuses_a_reference(monkeypatch: pytest.MonkeyPatch) -> None:
    """`backend.config` sits below the secrets store and cannot resolve: `secret:...` is never used as a value."""
    monkeypatch.setenv("DATABASE_URL", "secret:database-url")
    result = subprocess.run([sys.executable, "-c", "from backend.config import get_settings; get_settings()"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert ("ConfigError: DATABASE_URL=secret:database-url cannot be resolved: this process did not install the "
            "settings loader (backend.settings_loader.install)") in result.stderr
