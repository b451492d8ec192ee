"""Google Cloud Secret Manager through the official client (`google-cloud-secret-manager`, gRPC).

`SECRET_MANAGER_ENDPOINT=host:port` points the client elsewhere; a loopback address gets a plain (insecure) gRPC
channel, which is how tests and emulators plug in. Google's errors are mapped to `backend.errors` with messages
of our own, so callers see the same errors as with the local store.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import grpc
from google.api_core import exceptions as gexc
from google.api_core.client_options import ClientOptions
from google.api_core.retry import Retry, if_exception_type
from google.cloud import secretmanager_v1 as sm
from google.cloud.secretmanager_v1.services.secret_manager_service.transports import (
    SecretManagerServiceGrpcTransport,
)
from pydantic import SecretBytes

from backend.config import Settings
from backend.errors import ConfigError, Conflict, InvalidInput, NotFound, Unavailable
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

log = logging.getLogger(__name__)
TIMEOUT_S = 10.0
"""Overall time for one operation, retries included: a console user waits no longer than this."""


def is_loopback(endpoint: str) -> bool:
    host = endpoint.rsplit(":", 1)[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def make_client(endpoint: str | None) -> sm.SecretManagerServiceClient:
    if endpoint and is_loopback(endpoint):
        transport = SecretManagerServiceGrpcTransport(channel=grpc.insecure_channel(endpoint))
        return sm.SecretManagerServiceClient(transport=transport)
    options = ClientOptions(api_endpoint=endpoint) if endpoint else None
    return sm.SecretManagerServiceClient(client_options=options)


@contextmanager
def _mapped(what: str, *, stale_etag: bool = False) -> Iterator[None]:
    """Google's exceptions as ours; `what` names the target (`secret 'x'`, `secret 'x' version 2`)."""
    try:
        yield
    except gexc.NotFound:
        raise NotFound(f"{what} not found") from None
    except gexc.Conflict:  # AlreadyExists (gRPC) and Conflict (REST)
        raise Conflict(f"{what} already exists") from None
    except gexc.FailedPrecondition as exc:
        if stale_etag:
            raise Conflict(f"{what} was changed by someone else (stale etag): reload it and try again") from None
        raise InvalidInput(f"{what}: {exc.message}") from None
    except gexc.InvalidArgument as exc:
        raise InvalidInput(f"{what}: {exc.message}") from None
    except (gexc.PermissionDenied, gexc.Unauthenticated) as exc:
        raise Unavailable(f"Secret Manager refused the request for {what}: {exc.message}") from None
    except (gexc.GoogleAPIError, gexc.RetryError) as exc:
        raise Unavailable(f"Secret Manager is unavailable ({type(exc).__name__}) for {what}") from None


def _version_number(path: str) -> int:
    return int(path.rsplit("/", 1)[1])


def _time(message: Any, field: str) -> datetime | None:
    return getattr(message, field) if field in message else None


class GcpSecretsBackend(SecretsBackend):
    kind = "gcp"

    def __init__(self, project: str, client: sm.SecretManagerServiceClient, timeout: float = TIMEOUT_S) -> None:
        self.project = project
        self.client = client
        # Reads retry transient errors with backoff within `timeout` (the client's defaults allow 60 s); writes
        # are tried once, so an answer lost in transit never creates a second version.
        self._read = {
            "timeout": timeout,
            "retry": Retry(predicate=if_exception_type(gexc.ServiceUnavailable, gexc.ResourceExhausted),
                           initial=0.1, maximum=1.0, multiplier=2.0, timeout=timeout),
        }
        self._write = {"timeout": timeout, "retry": None}

    @classmethod
    def from_settings(cls, settings: Settings) -> GcpSecretsBackend:
        if not settings.gcp_project_id:
            raise ConfigError("SECRETS_BACKEND=gcp needs GCP_PROJECT_ID")
        return cls(settings.gcp_project_id, make_client(settings.secret_manager_endpoint))

    def _path(self, name: str) -> str:
        return f"projects/{self.project}/secrets/{name}"

    def _version_path(self, name: str, version: VersionRef) -> str:
        return f"{self._path(name)}/versions/{version}"

    @staticmethod
    def _what(name: str, version: VersionRef | None = None) -> str:
        if version is None:
            return f"secret {name!r}"
        return f"secret {name!r} version {version}" if version != "latest" else f"secret {name!r} (latest version)"

    # -- conversions ----------------------------------------------------------------------------------------

    @staticmethod
    def _meta(secret: sm.Secret) -> SecretMeta:
        rotation = secret.rotation if "rotation" in secret else None
        return SecretMeta(
            name=secret.name.rsplit("/", 1)[1],
            create_time=secret.create_time,
            etag=secret.etag,
            labels=dict(secret.labels),
            replication=Replication(tuple(r.location for r in secret.replication.user_managed.replicas)),
            expire_time=_time(secret, "expire_time"),
            rotation_period=rotation.rotation_period if rotation and "rotation_period" in rotation else None,
            next_rotation_time=_time(rotation, "next_rotation_time") if rotation else None,
            topics=tuple(t.name for t in secret.topics),
        )

    @staticmethod
    def _version(version: sm.SecretVersion) -> SecretVersion:
        parts = version.name.split("/")
        return SecretVersion(
            secret=parts[3],
            version=int(parts[5]),
            state=VersionState(version.state.name),
            create_time=version.create_time,
            etag=version.etag,
            destroy_time=_time(version, "destroy_time"),
        )

    @staticmethod
    def _secret_body(spec: SecretSpec) -> dict[str, Any]:
        replication: dict[str, Any] = (
            {"automatic": {}} if spec.replication.automatic
            else {"user_managed": {"replicas": [{"location": loc} for loc in spec.replication.locations]}}
        )
        body: dict[str, Any] = {"labels": spec.labels, "replication": replication}
        if spec.expire_time:
            body["expire_time"] = spec.expire_time
        if spec.ttl:
            body["ttl"] = spec.ttl
        if spec.rotation_period or spec.next_rotation_time:
            body["rotation"] = {k: v for k, v in (("rotation_period", spec.rotation_period),
                                                  ("next_rotation_time", spec.next_rotation_time)) if v}
        if spec.topics:
            body["topics"] = [{"name": topic} for topic in spec.topics]
        return body

    # -- operations -----------------------------------------------------------------------------------------

    def list_secrets(
        self, *, labels: dict[str, str] | None = None, page_size: int = 100, page_token: str | None = None
    ) -> SecretPage:
        request = {
            "parent": f"projects/{self.project}",
            "page_size": page_size,
            "page_token": page_token or "",
            "filter": " AND ".join(f"labels.{k}={v}" for k, v in sorted((labels or {}).items())),
        }
        with _mapped(f"secrets of project {self.project!r}"):
            response = next(iter(self.client.list_secrets(request=request, **self._read).pages))
        return SecretPage([self._meta(s) for s in response.secrets], response.next_page_token or None)

    def create_secret(self, name: str, spec: SecretSpec) -> SecretMeta:
        request = {"parent": f"projects/{self.project}", "secret_id": name, "secret": self._secret_body(spec)}
        with _mapped(self._what(name)):
            return self._meta(self.client.create_secret(request=request, **self._write))

    def get_secret(self, name: str) -> SecretMeta:
        with _mapped(self._what(name)):
            return self._meta(self.client.get_secret(name=self._path(name), **self._read))

    def update_labels(self, name: str, labels: dict[str, str], etag: str) -> SecretMeta:
        request = {
            "secret": {"name": self._path(name), "labels": labels, "etag": etag},
            "update_mask": {"paths": ["labels"]},
        }
        with _mapped(self._what(name), stale_etag=True):
            return self._meta(self.client.update_secret(request=request, **self._write))

    def delete_secret(self, name: str, etag: str | None = None) -> None:
        with _mapped(self._what(name), stale_etag=etag is not None):
            self.client.delete_secret(request={"name": self._path(name), "etag": etag or ""}, **self._write)

    def add_version(self, name: str, data: SecretBytes) -> SecretVersion:
        request = {"parent": self._path(name), "payload": {"data": data.get_secret_value()}}
        with _mapped(self._what(name)):
            return self._version(self.client.add_secret_version(request=request, **self._write))

    def list_versions(self, name: str) -> list[SecretVersion]:
        with _mapped(self._what(name)):
            found = [self._version(v) for v in
                     self.client.list_secret_versions(request={"parent": self._path(name)}, **self._read)]
        return sorted(found, key=lambda v: v.version, reverse=True)

    def get_version(self, name: str, version: VersionRef) -> SecretVersion:
        with _mapped(self._what(name, version)):
            return self._version(
                self.client.get_secret_version(name=self._version_path(name, version), **self._read))

    def access_version(self, name: str, version: VersionRef) -> tuple[int, SecretBytes]:
        with _mapped(self._what(name, version)):
            response = self.client.access_secret_version(name=self._version_path(name, version), **self._read)
        return _version_number(response.name), SecretBytes(response.payload.data)

    def set_version_state(self, name: str, version: int, action: VersionAction) -> SecretVersion:
        call = {
            "enable": self.client.enable_secret_version,
            "disable": self.client.disable_secret_version,
            "destroy": self.client.destroy_secret_version,
        }[action]
        with _mapped(self._what(name, version)):
            return self._version(call(request={"name": self._version_path(name, version)}, **self._write))
