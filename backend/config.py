"""One typed settings object for every process: environment variables first, then `secrets.env`.

Every setting is documented in `secrets.env.example`; the names are the upper-case field names.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from backend.errors import ConfigError


def _env_file() -> Path:
    return Path(os.environ.get("SECRETS_ENV_FILE", "secrets.env"))


class Settings(BaseSettings):
    # env_ignore_empty: `NAME=` in secrets.env (as copied from the example) means "use the default".
    model_config = SettingsConfigDict(
        env_file_encoding="utf-8", extra="ignore", case_sensitive=False, env_ignore_empty=True
    )

    # -- database -------------------------------------------------------------------------------------
    database_url: str | None = None
    db_profile: Literal["auto", "postgres", "timescaledb"] = "auto"
    retention_raw_days: int = Field(default=14, ge=1)
    retention_1m_days: int = Field(default=90, ge=1)
    retention_1h_days: int = Field(default=730, ge=1)

    # -- kafka ----------------------------------------------------------------------------------------
    kafka_bootstrap_servers: str | None = None
    telemetry_topic: str = "gpu.metrics.v1"
    token_usage_topic: str = "token.usage.v1"
    dlq_topic: str = "telemetry.dlq"
    kafka_group_id: str = "telemetry-sink"
    kafka_partitions: int = Field(default=12, ge=1)
    kafka_replication_factor: int = Field(default=1, ge=1)
    kafka_security_protocol: str | None = None
    kafka_sasl_mechanism: str | None = None
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_ssl_ca_location: str | None = None
    kafka_client_config: dict[str, str] = Field(
        default_factory=dict, description="extra librdkafka properties as JSON, passed through as they are"
    )

    # -- sink -----------------------------------------------------------------------------------------
    sink_batch_size: int = Field(default=20000, ge=1)
    sink_batch_max_latency_ms: int = Field(default=50, ge=1)
    sink_writers: int = Field(
        default=2, ge=1, le=8, description="batches a sink stores at once, each on a connection of its own "
        "(offsets are still committed in order)"
    )
    sink_metrics_port: int | None = None
    sink_dlq_max_message_bytes: int | None = Field(
        default=None, gt=0, description="largest dead letter (whole record); unset: the producer's message.max.bytes"
    )
    rollup_max_delay_s: float = Field(
        default=10, ge=2, description="postgres profile: a complete minute's rollup is materialized within this"
    )
    sink_status_interval_s: float = Field(
        default=5, ge=0.5, le=300, description="how often each sink records its lag, rate and partitions in the "
        "database (sink_status), where the console reads them; three intervals without a report: lag unknown"
    )
    archive_url: str | None = Field(
        default=None, description="Parquet archive of raw days: a directory or gs://BUCKET/PREFIX; set = archiving on"
    )

    # -- health ---------------------------------------------------------------------------------------
    health_window_s: int = Field(default=600, ge=60)
    health_xid_window_s: int = Field(default=3600, ge=60)
    health_stale_after_s: int = Field(default=120, ge=10)
    health_evaluate_every_s: int = Field(default=30, ge=1)
    health_resolve_after_evaluations: int = Field(default=3, ge=1)
    health_resolve_hold_s: int = Field(default=120, ge=0)
    health_reopen_window_s: int = Field(default=3600, ge=0)
    health_model_limits: dict[str, dict[str, float]] = Field(default_factory=dict)
    health_webhook_url: SecretStr | None = None
    health_webhook_format: Literal["json", "slack"] = "json"
    health_webhook_timeout_s: float = Field(default=5.0, gt=0)
    health_webhook_retries: int = Field(default=3, ge=0)
    health_webhook_max_age_s: int = Field(default=86400, ge=60)
    health_risk_horizon_h: int = Field(default=24, ge=1)
    health_model_dir: Path = Path(".data/models")
    health_predict_every_s: int = Field(default=300, ge=30)

    # -- api and console ------------------------------------------------------------------------------
    api_host: str = "127.0.0.1"
    api_port: int = 8080
    api_base_url: str = "http://127.0.0.1:8080"
    console_port: int = 8501
    admin_password: SecretStr | None = None
    api_max_body_bytes: int = Field(default=65536, ge=1024)
    query_statement_timeout_s: float = Field(default=30, ge=0)
    query_max_range_raw_days: float = Field(default=1, gt=0)
    query_max_range_1m_days: float = Field(default=35, gt=0)
    query_max_range_1h_days: float = Field(default=731, gt=0)

    # -- console sign-in (docs/console.md) ------------------------------------------------------------
    signin_throttle_threshold: int = Field(default=5, ge=1)
    signin_throttle_base_seconds: int = Field(default=30, ge=1)
    signin_throttle_max_seconds: int = Field(default=900, ge=1)
    signin_failure_window_seconds: int = Field(default=900, ge=1)
    signin_account_lock_addresses: int = Field(default=5, ge=2)
    signin_account_lock_seconds: int = Field(default=900, ge=1)
    console_trusted_proxies: list[str] = Field(default_factory=list)
    oidc_allowed_issuers: list[str] = Field(default_factory=list)
    oidc_allowed_email_domains: list[str] = Field(default_factory=list)

    # -- secrets --------------------------------------------------------------------------------------
    secrets_backend: Literal["local", "gcp"] = "local"
    gcp_project_id: str | None = None
    secret_manager_endpoint: str | None = None
    secrets_local_key: SecretStr | None = None
    secrets_local_key_file: Path | None = None
    secrets_local_path: Path = Path(".data/secrets.json")

    # -- compute (VMs) --------------------------------------------------------------------------------
    vm_provider: Literal["local", "gcp"] = "local"
    gcp_zone: str | None = None
    compute_endpoint: str | None = None
    docker_host: str | None = None
    gce_metadata_host: str = "metadata.google.internal"
    vm_label_filter: str = "platform=stream-platform"

    # -- auto-shutdown agent --------------------------------------------------------------------------
    autoshutdown_action: Literal["dry-run", "command", "gcp"] = "dry-run"
    autoshutdown_command: str = "shutdown -h now"
    autoshutdown_idle_seconds: float = Field(default=1800, ge=0)
    autoshutdown_warn_seconds: float = Field(default=300, ge=0)
    autoshutdown_min_uptime_seconds: float = Field(default=900, ge=0)
    autoshutdown_poll_seconds: float = Field(default=30, gt=0)
    autoshutdown_max_age_seconds: float | None = None
    autoshutdown_never_stop: list[str] = Field(default_factory=list)
    autoshutdown_nginx_stat_url: str | None = None
    autoshutdown_cpu_busy_percent: float = 10.0
    autoshutdown_network_kib_per_s: float = 100.0
    autoshutdown_gpu_util_percent: float = 5.0
    autoshutdown_gpu_memory_mib: float | None = None
    autoshutdown_gpu_expected: bool = False
    autoshutdown_ssh: bool = True
    autoshutdown_probes: list[str] = Field(default_factory=list)
    autoshutdown_probe_timeout_seconds: float = Field(default=10, gt=0)
    autoshutdown_hooks: list[str] = Field(default_factory=list)
    autoshutdown_hook_timeout_seconds: float = Field(default=60, gt=0)
    autoshutdown_wall: bool = False
    autoshutdown_host: str | None = None
    autoshutdown_state_file: Path = Path(".data/autoshutdown-state.json")
    autoshutdown_history_days: int = Field(default=14, ge=1)

    # -- streams (nginx-rtmp) -------------------------------------------------------------------------
    stream_key_pepper: SecretStr | None = None
    streams_nginx_control_url: str | None = None
    streams_nginx_stat_url: str | None = None
    streams_lockout_threshold: int = Field(default=5, ge=1)
    streams_lockout_base_seconds: int = Field(default=60, ge=1)
    streams_lockout_max_seconds: int = Field(default=3600, ge=1)
    streams_failure_window_seconds: int = Field(default=900, ge=1)
    streams_db_pool_size: int = Field(default=8, ge=1)
    streams_callback_synchronous_commit: bool = False
    streams_callback_token: SecretStr | None = None
    streams_callback_allowed_nets: list[str] = Field(default_factory=lambda: ["127.0.0.0/8", "::1/128"])
    streams_host: str | None = None
    """The VM (host, as in the GPU inventory) whose nginx-rtmp calls these callbacks: stream costs bind to it."""
    streams_schedule_lead_seconds: float = Field(default=600, ge=0)

    # -- costs ----------------------------------------------------------------------------------------
    cost_idle_util_threshold: float = Field(default=5.0, ge=0, le=100)
    savings_horizon_hours: float = Field(default=24.0, ge=1 / 60, le=24 * 366)
    """An auto-stop counts as saving until the next start or this many hours, whichever comes first."""

    # -- logging --------------------------------------------------------------------------------------
    log_level: str = "INFO"

    def require_database_url(self) -> str:
        if not self.database_url:
            raise ConfigError("DATABASE_URL is not set: point it at PostgreSQL, or run `make demo`")
        return self.database_url

    def require_kafka(self) -> str:
        if not self.kafka_bootstrap_servers:
            raise ConfigError("KAFKA_BOOTSTRAP_SERVERS is not set: point it at a Kafka broker, or run `make demo`")
        return self.kafka_bootstrap_servers


REFERENCE_PREFIX = "secret:"


def read_settings(**overrides: object) -> Settings:
    """Settings from the environment and `secrets.env` (environment wins), then `overrides`. `secret:NAME` references
    are left as they are: resolving them needs the secrets store, which imports this module
    (`backend.settings_loader` resolves them)."""
    settings = Settings(_env_file=_env_file())  # type: ignore[call-arg]
    return settings.model_copy(update=overrides) if overrides else settings


def _text_of(value: object) -> str | None:
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    return value if isinstance(value, str) else None


def references_in(settings: Settings) -> dict[str, str]:
    """Field name → reference, for every text setting that is a `secret:` reference."""
    found = {}
    for field in type(settings).model_fields:
        text = _text_of(getattr(settings, field))
        if text is not None and text.startswith(REFERENCE_PREFIX):
            found[field] = text
    return found


def _refuse_references(settings: Settings) -> Settings:
    """Without a resolver a reference is an error, never a value: `secret:database-url` is no database URL."""
    if found := references_in(settings):
        field, reference = min(found.items())
        raise ConfigError(f"{field.upper()}={reference} cannot be resolved: this process did not install the "
                          "settings loader (backend.settings_loader.install)")
    return settings


Resolver = Callable[[Settings], Settings]
_resolver: list[Resolver] = [_refuse_references]


def use_resolver(resolve: Resolver) -> None:
    """Make get_settings() resolve `secret:` references with `resolve`. Every entry point installs
    `backend.settings_loader`'s: this module sits below the secrets store, so the resolver comes from above."""
    if _resolver[0] is not resolve:
        _resolver[0] = resolve
        get_settings.cache_clear()


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once, references resolved by the installed resolver."""
    return _resolver[0](read_settings())
