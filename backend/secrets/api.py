"""REST for secrets under `/api/v1/secrets` (plus `/api/v1/secrets-rotation-due` and `/api/v1/secrets-audit`,
outside it so no secret name can shadow them). Any valid token gets in; `backend.secrets.service` decides what its
role may do (operator: metadata; admin: everything) and audits every call, denials included."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Query, Response
from pydantic import AwareDatetime, BaseModel, Field, SecretStr

from backend.api.auth import viewer
from backend.api.deps import settings_of
from backend.api.errors import ERROR_RESPONSES, ErrorBody
from backend.audit import AuditEntry
from backend.config import Settings
from backend.identity.principal import Principal
from backend.parsing import parse_labels
from backend.secrets.diff import ChangeKind, PayloadFormat
from backend.secrets.models import (
    Replication,
    SecretDetails,
    SecretMeta,
    SecretPage,
    SecretSpec,
    SecretVersion,
    parse_version,
)
from backend.secrets.service import RotationStatus, SecretsService

router = APIRouter(
    prefix="/api/v1", tags=["secrets"],
    responses={**ERROR_RESPONSES, 404: {"model": ErrorBody, "description": "no such secret or version"},
               409: {"model": ErrorBody, "description": "the name exists, or the etag is stale"}},
)

NAME_PATTERN = r"^[A-Za-z0-9_-]{1,255}$"
Name = Annotated[str, Path(pattern=NAME_PATTERN, description="the secret's name")]
Version = Annotated[str, Path(pattern=r"^(latest|[1-9][0-9]{0,8})$", description="a number, or `latest`")]
Number = Annotated[int, Path(ge=1, le=999_999_999, description="a version number")]


def _service(settings: Settings = Depends(settings_of)) -> SecretsService:
    return SecretsService(settings)


Actor = Annotated[Principal, Depends(viewer)]
Service = Annotated[SecretsService, Depends(_service)]


class SecretIn(BaseModel):
    name: str = Field(pattern=NAME_PATTERN)
    value: SecretStr | None = Field(default=None, max_length=65536, description="the first version (optional)")
    labels: dict[str, str] = Field(default_factory=dict)
    locations: list[str] = Field(default_factory=list, max_length=20,
                                 description="user-managed replication; empty = automatic")
    ttl_seconds: int | None = Field(default=None, gt=0, le=10 * 365 * 86400)
    expire_time: AwareDatetime | None = None
    rotation_period_seconds: int | None = Field(default=None, ge=3600, le=10 * 365 * 86400)
    next_rotation_time: AwareDatetime | None = None
    topics: list[str] = Field(default_factory=list, max_length=10,
                              description="Pub/Sub topics for rotation notices (Secret Manager needs one)")

    def spec(self) -> SecretSpec:
        return SecretSpec(
            labels=self.labels,
            replication=Replication(tuple(self.locations)),
            ttl=timedelta(seconds=self.ttl_seconds) if self.ttl_seconds else None,
            expire_time=self.expire_time,
            rotation_period=timedelta(seconds=self.rotation_period_seconds) if self.rotation_period_seconds else None,
            next_rotation_time=self.next_rotation_time,
            topics=tuple(self.topics),
        )


class ValueIn(BaseModel):
    value: SecretStr = Field(min_length=1, max_length=65536)


class LabelsIn(BaseModel):
    labels: dict[str, str]
    etag: str = Field(min_length=1, max_length=200, description="the etag you read; a stale one is 409")


class RevealedOut(BaseModel):
    secret: str
    version: int
    value: str


class ChangeOut(BaseModel):
    key: str
    kind: ChangeKind
    old: str | None = None
    new: str | None = None


class DiffOut(BaseModel):
    secret: str
    old_version: int
    new_version: int
    format: PayloadFormat
    changed: bool
    old_length: int
    new_length: int
    revealed: bool
    changes: list[ChangeOut]


@router.get("/secrets", response_model=SecretPage, summary="Secrets (metadata only), by name, filtered by labels")
def list_secrets(
    actor: Actor, service: Service,
    label: Annotated[list[str], Query(max_length=64, description="key=value, repeatable")] = [],  # noqa: B006
    page_size: Annotated[int, Query(ge=1, le=1000)] = 100,
    page_token: Annotated[str | None, Query(max_length=1024)] = None,
) -> SecretPage:
    return service.list_secrets(actor, labels=parse_labels(label), page_size=page_size, page_token=page_token)


@router.post("/secrets", response_model=SecretDetails, status_code=201, summary="Create a secret (admin)")
def create(body: SecretIn, actor: Actor, service: Service) -> SecretDetails:
    return service.create(actor, body.name, body.spec(), body.value)


@router.get("/secrets-rotation-due", response_model=list[RotationStatus], summary="Secrets due for rotation")
def rotation_due(
    actor: Actor, service: Service, within_days: Annotated[float, Query(ge=0, le=3650)] = 7,
) -> list[RotationStatus]:
    return service.rotation_due(actor, within=timedelta(days=within_days))


@router.get("/secrets-audit", response_model=list[AuditEntry], summary="The secrets audit trail, newest first (admin)")
def audit(
    actor: Actor, service: Service,
    secret: Annotated[str | None, Query(pattern=NAME_PATTERN)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> list[AuditEntry]:
    return service.audit_entries(actor, secret=secret, limit=limit)


@router.get("/secrets/{name}", response_model=SecretDetails, summary="Metadata and version states")
def describe(name: Name, actor: Actor, service: Service) -> SecretDetails:
    return service.describe(actor, name)


@router.delete("/secrets/{name}", status_code=204, response_class=Response, summary="Delete a secret (admin)")
def delete(
    name: Name, actor: Actor, service: Service,
    etag: Annotated[str | None, Query(max_length=200, description="only if unchanged since read")] = None,
) -> Response:
    service.delete(actor, name, etag)
    return Response(status_code=204)


@router.put("/secrets/{name}/labels", response_model=SecretMeta, summary="Replace labels, guarded by the etag (admin)")
def update_labels(name: Name, body: LabelsIn, actor: Actor, service: Service) -> SecretMeta:
    return service.update_labels(actor, name, body.labels, body.etag)


@router.post("/secrets/{name}/versions", response_model=SecretVersion, status_code=201, summary="Add a version (admin)")
def add_version(name: Name, body: ValueIn, actor: Actor, service: Service) -> SecretVersion:
    return service.add_version(actor, name, body.value)


@router.get("/secrets/{name}/versions/{version}/value", response_model=RevealedOut,
            summary="Reveal a version's value (admin, audited)")
def reveal(name: Name, version: Version, actor: Actor, service: Service) -> RevealedOut:
    revealed = service.reveal(actor, name, parse_version(version))
    return RevealedOut(secret=revealed.secret, version=revealed.version, value=revealed.value.get_secret_value())


@router.post("/secrets/{name}/versions/{number}/{action}", response_model=SecretVersion,
             summary="Enable, disable or destroy a version (admin)")
def set_state(
    name: Name, number: Number, action: Literal["enable", "disable", "destroy"], actor: Actor, service: Service,
) -> SecretVersion:
    call = {"enable": service.enable_version, "disable": service.disable_version,
            "destroy": service.destroy_version}[action]
    return call(actor, name, number)


@router.get("/secrets/{name}/diff", response_model=DiffOut, summary="Whether and where two versions differ")
def diff(
    name: Name, actor: Actor, service: Service,
    old: Annotated[str, Query(pattern=r"^(latest|[1-9][0-9]{0,8})$")],
    new: Annotated[str, Query(pattern=r"^(latest|[1-9][0-9]{0,8})$")] = "latest",
    reveal: bool = False,
) -> DiffOut:
    result = service.diff(actor, name, parse_version(old), parse_version(new), reveal=reveal)
    return DiffOut(
        secret=result.secret, old_version=result.old_version, new_version=result.new_version, format=result.format,
        changed=result.changed, old_length=result.old_length, new_length=result.new_length, revealed=result.revealed,
        changes=[ChangeOut(key=c.key, kind=c.kind, old=c.old.get_secret_value() if c.old else None,
                           new=c.new.get_secret_value() if c.new else None) for c in result.changes],
    )
