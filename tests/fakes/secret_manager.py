"""A wire-level fake of Google Cloud Secret Manager (gRPC, v1) for the official client.

It serves the real `google.cloud.secretmanager.v1.SecretManagerService` methods from memory with the behaviour
our code relies on: etags that change on every write (a stale one is FAILED_PRECONDITION), version states,
`latest` = newest ENABLED version, NOT_FOUND, ALREADY_EXISTS, FAILED_PRECONDITION for a disabled or destroyed
version, INVALID_ARGUMENT for bad ids, filters and rotation without topics, TTL/expiry and pagination.
"""

from __future__ import annotations

import re
import secrets
import threading
from collections.abc import Callable
from concurrent import futures
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NoReturn

import grpc
from google.cloud import secretmanager_v1 as sm
from google.protobuf import empty_pb2

from backend.embedded.ports import free_port

SERVICE = "google.cloud.secretmanager.v1.SecretManagerService"
_ID = re.compile(r"^[A-Za-z0-9_-]{1,255}$")
_FILTER_TERM = re.compile(r"^labels\.([a-z][a-z0-9_-]*)=([a-z0-9_-]*)$")


def _etag() -> str:
    return f'"{secrets.token_hex(6)}"'


def _abort(context: grpc.ServicerContext, code: grpc.StatusCode, message: str) -> NoReturn:
    context.abort(code, message)
    raise AssertionError("unreachable")  # context.abort raises


@dataclass
class _Stored:
    secret: sm.Secret
    versions: list[sm.SecretVersion] = field(default_factory=list)
    payloads: dict[int, bytes] = field(default_factory=dict)


class FakeSecretManager:
    """Start with `start()`; `endpoint` is `127.0.0.1:PORT`; `calls` lists the RPC method names served."""

    def __init__(self, project: str = "test-project") -> None:
        self.project = project
        self.calls: list[str] = []
        self._secrets: dict[str, _Stored] = {}
        self._lock = threading.Lock()
        self._server: grpc.Server | None = None
        self.port = 0

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> FakeSecretManager:
        self.port = free_port()
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        self._server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, self._handlers()),))
        self._server.add_insecure_port(self.endpoint)
        self._server.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop(grace=None).wait()

    def _handlers(self) -> dict[str, grpc.RpcMethodHandler]:
        methods: dict[str, tuple[Callable[..., Any], Any, Any]] = {
            "ListSecrets": (self.list_secrets, sm.ListSecretsRequest, sm.ListSecretsResponse),
            "CreateSecret": (self.create_secret, sm.CreateSecretRequest, sm.Secret),
            "GetSecret": (self.get_secret, sm.GetSecretRequest, sm.Secret),
            "UpdateSecret": (self.update_secret, sm.UpdateSecretRequest, sm.Secret),
            "DeleteSecret": (self.delete_secret, sm.DeleteSecretRequest, None),
            "AddSecretVersion": (self.add_version, sm.AddSecretVersionRequest, sm.SecretVersion),
            "ListSecretVersions": (self.list_versions, sm.ListSecretVersionsRequest, sm.ListSecretVersionsResponse),
            "GetSecretVersion": (self.get_version, sm.GetSecretVersionRequest, sm.SecretVersion),
            "AccessSecretVersion": (self.access_version, sm.AccessSecretVersionRequest,
                                    sm.AccessSecretVersionResponse),
            "DisableSecretVersion": (self.disable_version, sm.DisableSecretVersionRequest, sm.SecretVersion),
            "EnableSecretVersion": (self.enable_version, sm.EnableSecretVersionRequest, sm.SecretVersion),
            "DestroySecretVersion": (self.destroy_version, sm.DestroySecretVersionRequest, sm.SecretVersion),
        }
        return {
            name: grpc.unary_unary_rpc_method_handler(
                self._served(name, fn),
                request_deserializer=request.deserialize,
                response_serializer=response.serialize if response else empty_pb2.Empty.SerializeToString,
            )
            for name, (fn, request, response) in methods.items()
        }

    def _served(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def handler(request: Any, context: grpc.ServicerContext) -> Any:
            with self._lock:
                self.calls.append(name)
                self._expire()
                return fn(request, context)

        return handler

    # -- helpers -------------------------------------------------------------------------------------------------

    def _expire(self) -> None:
        now = datetime.now(UTC)
        for name in [n for n, s in self._secrets.items() if "expire_time" in s.secret and
                     s.secret.expire_time <= now]:
            del self._secrets[name]

    def _parent_ok(self, parent: str, context: grpc.ServicerContext) -> None:
        if parent != f"projects/{self.project}":
            _abort(context, grpc.StatusCode.NOT_FOUND, f"Project [{parent}] not found.")

    def _stored(self, path: str, context: grpc.ServicerContext) -> _Stored:
        parts = path.split("/")
        if len(parts) < 4 or parts[:3] != ["projects", self.project, "secrets"] or parts[3] not in self._secrets:
            _abort(context, grpc.StatusCode.NOT_FOUND, f"Secret [{'/'.join(parts[:4])}] not found.")
        return self._secrets[parts[3]]

    def _version(self, path: str, context: grpc.ServicerContext) -> tuple[_Stored, sm.SecretVersion]:
        stored = self._stored(path, context)
        ref = path.rsplit("/", 1)[1]
        if ref == "latest":
            enabled = [v for v in stored.versions if v.state == sm.SecretVersion.State.ENABLED]
            if not enabled:
                _abort(context, grpc.StatusCode.NOT_FOUND, f"Secret [{path}] not found or has no versions.")
            return stored, enabled[-1]
        if not ref.isdigit() or not 1 <= int(ref) <= len(stored.versions):
            _abort(context, grpc.StatusCode.NOT_FOUND, f"Secret Version [{path}] not found.")
        return stored, stored.versions[int(ref) - 1]

    @staticmethod
    def _check_etag(current: str, given: str, context: grpc.ServicerContext) -> None:
        if given and given != current:
            _abort(context, grpc.StatusCode.FAILED_PRECONDITION, "The etag provided in the request does not match.")

    # -- secrets -------------------------------------------------------------------------------------------------

    def list_secrets(self, request: sm.ListSecretsRequest, context: grpc.ServicerContext) -> sm.ListSecretsResponse:
        self._parent_ok(request.parent, context)
        wanted: dict[str, str] = {}
        for term in filter(None, request.filter.split(" AND ")):
            match = _FILTER_TERM.match(term.strip())
            if not match:
                _abort(context, grpc.StatusCode.INVALID_ARGUMENT, f"Invalid filter term: {term}")
            wanted[match.group(1)] = match.group(2)
        names = sorted(n for n, s in self._secrets.items()
                       if all(s.secret.labels.get(k) == v for k, v in wanted.items()))
        if request.page_token and not request.page_token.isdigit():
            _abort(context, grpc.StatusCode.INVALID_ARGUMENT, "Invalid page token.")
        start = int(request.page_token) if request.page_token else 0
        size = request.page_size or 25000
        page = names[start:start + size]
        token = str(start + size) if start + size < len(names) else ""
        return sm.ListSecretsResponse(secrets=[self._secrets[n].secret for n in page], next_page_token=token,
                                      total_size=len(names))

    def create_secret(self, request: sm.CreateSecretRequest, context: grpc.ServicerContext) -> sm.Secret:
        self._parent_ok(request.parent, context)
        if not _ID.match(request.secret_id):
            _abort(context, grpc.StatusCode.INVALID_ARGUMENT, "Secret id must match [a-zA-Z_0-9-]{1,255}.")
        if request.secret_id in self._secrets:
            _abort(context, grpc.StatusCode.ALREADY_EXISTS,
                   f"Secret [{request.parent}/secrets/{request.secret_id}] already exists.")
        secret = sm.Secret(request.secret)
        if "replication" not in secret:
            _abort(context, grpc.StatusCode.INVALID_ARGUMENT, "Replication policy must be set.")
        if "rotation" in secret and not secret.topics:
            _abort(context, grpc.StatusCode.INVALID_ARGUMENT, "Rotation requires at least one topic.")
        now = datetime.now(UTC)
        if "ttl" in secret:
            secret.expire_time = now + secret.ttl
        secret.name = f"{request.parent}/secrets/{request.secret_id}"
        secret.create_time = now
        secret.etag = _etag()
        self._secrets[request.secret_id] = _Stored(secret)
        return secret

    def get_secret(self, request: sm.GetSecretRequest, context: grpc.ServicerContext) -> sm.Secret:
        return self._stored(request.name, context).secret

    def update_secret(self, request: sm.UpdateSecretRequest, context: grpc.ServicerContext) -> sm.Secret:
        stored = self._stored(request.secret.name, context)
        if list(request.update_mask.paths) != ["labels"]:
            _abort(context, grpc.StatusCode.INVALID_ARGUMENT, "This fake updates labels only.")
        self._check_etag(stored.secret.etag, request.secret.etag, context)
        stored.secret.labels.clear()
        stored.secret.labels.update(dict(request.secret.labels))
        stored.secret.etag = _etag()
        return stored.secret

    def delete_secret(self, request: sm.DeleteSecretRequest, context: grpc.ServicerContext) -> empty_pb2.Empty:
        stored = self._stored(request.name, context)
        self._check_etag(stored.secret.etag, request.etag, context)
        del self._secrets[request.name.split("/")[3]]
        return empty_pb2.Empty()

    # -- versions ------------------------------------------------------------------------------------------------

    def add_version(self, request: sm.AddSecretVersionRequest, context: grpc.ServicerContext) -> sm.SecretVersion:
        stored = self._stored(request.parent, context)
        number = len(stored.versions) + 1
        version = sm.SecretVersion(
            name=f"{stored.secret.name}/versions/{number}", create_time=datetime.now(UTC),
            state=sm.SecretVersion.State.ENABLED, etag=_etag(),
        )
        stored.versions.append(version)
        stored.payloads[number] = request.payload.data
        return version

    def list_versions(self, request: sm.ListSecretVersionsRequest,
                      context: grpc.ServicerContext) -> sm.ListSecretVersionsResponse:
        stored = self._stored(request.parent, context)
        return sm.ListSecretVersionsResponse(versions=list(reversed(stored.versions)),
                                             total_size=len(stored.versions))

    def get_version(self, request: sm.GetSecretVersionRequest, context: grpc.ServicerContext) -> sm.SecretVersion:
        return self._version(request.name, context)[1]

    def access_version(self, request: sm.AccessSecretVersionRequest,
                       context: grpc.ServicerContext) -> sm.AccessSecretVersionResponse:
        stored, version = self._version(request.name, context)
        if version.state != sm.SecretVersion.State.ENABLED:
            _abort(context, grpc.StatusCode.FAILED_PRECONDITION,
                   f"Secret Version [{version.name}] is in {version.state.name} state.")
        number = int(version.name.rsplit("/", 1)[1])
        return sm.AccessSecretVersionResponse(name=version.name,
                                              payload=sm.SecretPayload(data=stored.payloads[number]))

    def _transition(self, name: str, etag: str, state: sm.SecretVersion.State,
                    context: grpc.ServicerContext) -> sm.SecretVersion:
        stored, version = self._version(name, context)
        self._check_etag(version.etag, etag, context)
        if version.state == sm.SecretVersion.State.DESTROYED:
            _abort(context, grpc.StatusCode.FAILED_PRECONDITION,
                   f"Secret Version [{version.name}] is in DESTROYED state.")
        version.state = state
        version.etag = _etag()
        if state == sm.SecretVersion.State.DESTROYED:
            version.destroy_time = datetime.now(UTC)
            stored.payloads.pop(int(version.name.rsplit("/", 1)[1]), None)
        return version

    def disable_version(self, request: sm.DisableSecretVersionRequest,
                        context: grpc.ServicerContext) -> sm.SecretVersion:
        return self._transition(request.name, request.etag, sm.SecretVersion.State.DISABLED, context)

    def enable_version(self, request: sm.EnableSecretVersionRequest,
                       context: grpc.ServicerContext) -> sm.SecretVersion:
        return self._transition(request.name, request.etag, sm.SecretVersion.State.ENABLED, context)

    def destroy_version(self, request: sm.DestroySecretVersionRequest,
                        context: grpc.ServicerContext) -> sm.SecretVersion:
        return self._transition(request.name, request.etag, sm.SecretVersion.State.DESTROYED, context)
