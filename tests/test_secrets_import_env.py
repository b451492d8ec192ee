"""`secrets import-env`: sensitive entries move into the store, the file can be rewritten to references."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner

from backend.cli import app
from backend.config import Settings
from backend.identity.principal import SYSTEM
from backend.secrets.import_env import import_env
from backend.secrets.service import SecretsService
from backend.settings_loader import load_settings

ENV_FILE = """# production settings
KAFKA_SASL_PASSWORD=kafka-pw-51b2
export DATABASE_URL="postgresql://app:db-pw-77c1@db.internal:5432/app"
TELEMETRY_TOPIC=gpu.metrics.v1

# the store's own key stays here
SECRETS_LOCAL_KEY=not-a-real-key
ADMIN_PASSWORD=
SOMETHING_ELSE=hello
"""


@pytest.fixture
def env_file(tmp_path: Path) -> Path:
    path = tmp_path / "secrets.env"
    path.write_text(ENV_FILE, encoding="utf-8")
    path.chmod(0o600)
    return path


def test_import_then_rewrite_to_references(settings: Settings, env_file: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    svc = SecretsService(settings)
    result = import_env(svc, SYSTEM, env_file, prefix="prod-", rewrite=True)
    assert [(i.key, i.secret, i.version, i.outcome) for i in result.imported] == [
        ("KAFKA_SASL_PASSWORD", "prod-kafka-sasl-password", 1, "created"),
        ("DATABASE_URL", "prod-database-url", 1, "created"),
    ]
    assert dict(result.skipped) == {
        "TELEMETRY_TOPIC": "not sensitive (choose it with --key, or use --all)",
        "SECRETS_LOCAL_KEY": "the secrets backend needs it to start",
        "ADMIN_PASSWORD": "empty",
        "SOMETHING_ELSE": "not a setting of this platform",
    }
    assert svc.reveal(SYSTEM, "prod-database-url").value.get_secret_value() == (
        "postgresql://app:db-pw-77c1@db.internal:5432/app")

    text = env_file.read_text(encoding="utf-8")
    assert "kafka-pw-51b2" not in text and "db-pw-77c1" not in text
    assert "KAFKA_SASL_PASSWORD=secret:prod-kafka-sasl-password\n" in text
    assert "DATABASE_URL=secret:prod-database-url\n" in text
    assert text.startswith("# production settings\n") and "SOMETHING_ELSE=hello\n" in text
    assert "\n# the store's own key stays here\nSECRETS_LOCAL_KEY=not-a-real-key\n" in text
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600

    monkeypatch.setenv("SECRETS_ENV_FILE", str(env_file))
    monkeypatch.delenv("DATABASE_URL")
    # the file's placeholder key must not replace the store's real key file, so drop it before loading
    env_file.write_text(text.replace("SECRETS_LOCAL_KEY=not-a-real-key\n", ""), encoding="utf-8")
    loaded = load_settings()
    assert loaded.kafka_sasl_password is not None
    assert loaded.kafka_sasl_password.get_secret_value() == "kafka-pw-51b2"
    assert loaded.database_url == "postgresql://app:db-pw-77c1@db.internal:5432/app"

    again = import_env(svc, SYSTEM, env_file, prefix="prod-")
    assert again.imported == [] and dict(again.skipped)["DATABASE_URL"] == "already a reference"


def test_reimport_is_idempotent_and_versions_changes(settings: Settings, env_file: Path) -> None:
    svc = SecretsService(settings)
    import_env(svc, SYSTEM, env_file, keys={"KAFKA_SASL_PASSWORD", "TELEMETRY_TOPIC"})
    assert [i.outcome for i in import_env(svc, SYSTEM, env_file, keys={"KAFKA_SASL_PASSWORD"}).imported] == [
        "unchanged"]
    env_file.write_text(ENV_FILE.replace("kafka-pw-51b2", "kafka-pw-rotated"), encoding="utf-8")
    changed = import_env(svc, SYSTEM, env_file, keys={"KAFKA_SASL_PASSWORD"}).imported
    assert [(i.version, i.outcome) for i in changed] == [(2, "new-version")]
    assert svc.reveal(SYSTEM, "telemetry-topic").value.get_secret_value() == "gpu.metrics.v1"


def test_cli_import_env_with_progress(settings: Settings, env_file: Path) -> None:
    result = CliRunner().invoke(app, ["secrets", "import-env", str(env_file), "--all", "--json"])
    assert result.exit_code == 0, result.output
    assert "importing secrets.env" in result.output  # the progress bar's label
    assert '"secret": "telemetry-topic"' in result.output and '"outcome": "created"' in result.output
    assert "kafka-pw-51b2" not in result.output
    missing = CliRunner().invoke(app, ["secrets", "import-env", str(env_file), "--key", "NOPE"])
    assert missing.exit_code == 2 and "not in the file: NOPE" in missing.output
