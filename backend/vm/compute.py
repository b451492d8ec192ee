"""Compute adapter: the platform's VMs on GCP (google-cloud-compute `InstancesClient` over REST) or this host.

`COMPUTE_ENDPOINT` (e.g. `http://127.0.0.1:PORT`) sends the official client to another REST endpoint with
anonymous credentials — how tests and emulators plug in.
"""

from __future__ import annotations

import os
import socket
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Protocol

import psutil
from google.api_core import exceptions as gexc
from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials

from backend.errors import InvalidInput, NotFound, Unavailable
from backend.nvml import Nvml, NvmlUnavailable

if TYPE_CHECKING:
    from google.cloud import compute_v1

_OPERATION_TIMEOUT = 300


@dataclass(frozen=True)
class VmInstance:
    name: str
    zone: str
    status: str
    machine_type: str
    gpus: list[str] = field(default_factory=list)
    last_start: datetime | None = None
    labels: dict[str, str] = field(default_factory=dict)
    details: dict[str, float | str] = field(default_factory=dict)
    autoshutdown: str | None = None
    """The host agent's latest decision and its last reason, when it reports to the database."""


class Instances(Protocol):
    provider: str

    def list(self) -> list[VmInstance]: ...
    def start(self, name: str, zone: str | None = None) -> str: ...
    def stop(self, name: str, zone: str | None = None) -> str: ...


def instances_client(endpoint: str | None = None) -> compute_v1.InstancesClient:
    """The official REST client; an explicit endpoint means an emulator or fake, so no credentials are sent.

    Imported here, not at module level: `google.cloud.compute_v1` takes seconds to import, and every CLI
    command would pay for it.
    """
    from google.cloud import compute_v1
    if endpoint:
        return compute_v1.InstancesClient(
            transport="rest", credentials=AnonymousCredentials(), client_options=ClientOptions(api_endpoint=endpoint)
        )
    return compute_v1.InstancesClient(transport="rest")


def _platform_label(spec: str) -> tuple[str, str] | None:
    if not spec:
        return None
    key, sep, value = spec.partition("=")
    if not sep or not key or not value:
        raise InvalidInput(f"VM_LABEL_FILTER {spec!r}: expected key=value, e.g. platform=stream-platform")
    return key.strip(), value.strip()


def _from_api(instance: compute_v1.Instance) -> VmInstance:
    gpus = [
        f"{acc.accelerator_count} × {acc.accelerator_type.rsplit('/', 1)[-1]}" for acc in instance.guest_accelerators
    ]
    started = instance.last_start_timestamp or None
    return VmInstance(
        name=instance.name,
        zone=instance.zone.rsplit("/", 1)[-1],
        status=instance.status,
        machine_type=instance.machine_type.rsplit("/", 1)[-1],
        gpus=gpus,
        last_start=datetime.fromisoformat(started) if started else None,
        labels=dict(instance.labels),
    )


class GcpInstances:
    provider = "gcp"

    def __init__(
        self, project: str, *, endpoint: str | None = None, label_filter: str = "", default_zone: str | None = None
    ) -> None:
        self.project, self.default_zone = project, default_zone
        self.label = _platform_label(label_filter)
        self.filter = f"labels.{self.label[0]} = {self.label[1]}" if self.label else None
        self.client = instances_client(endpoint)

    def list(self) -> list[VmInstance]:
        try:
            request = {"project": self.project} | ({"filter": self.filter} if self.filter else {})
            pages = self.client.aggregated_list(request=request)
            found = [_from_api(i) for _, scoped in pages for i in scoped.instances]
        except gexc.GoogleAPICallError as exc:
            raise Unavailable(f"the Compute API could not list instances of {self.project}: {exc.message}") from None
        return sorted(found, key=lambda vm: (vm.zone, vm.name))

    def _zone_of(self, name: str, zone: str | None) -> str:
        if zone or self.default_zone:
            return zone or self.default_zone  # type: ignore[return-value]
        for vm in self.list():
            if vm.name == name:
                return vm.zone
        raise NotFound(f"no instance named {name} in project {self.project}")

    def _operate(self, verb: str, name: str, zone: str | None) -> str:
        zone = self._zone_of(name, zone)
        method = self.client.start if verb == "start" else self.client.stop
        try:
            self._require_platform_vm(name, zone)
            operation = method(project=self.project, zone=zone, instance=name)
            operation.result(timeout=_OPERATION_TIMEOUT)
        except gexc.NotFound:
            raise NotFound(f"no instance named {name} in {self.project}/{zone}") from None
        except gexc.GoogleAPICallError as exc:
            raise Unavailable(f"the Compute API could not {verb} {name}: {exc.message}") from None
        return zone

    def _require_platform_vm(self, name: str, zone: str) -> None:
        """Start and stop by name reach only what the list shows: an instance without the platform's label is
        someone else's, whatever name or zone was typed."""
        if self.label is None:
            return
        key, value = self.label
        if self.client.get(project=self.project, zone=zone, instance=name).labels.get(key) != value:
            raise NotFound(f"{name} in {self.project}/{zone} is not a platform VM (no label {key}={value})")

    def start(self, name: str, zone: str | None = None) -> str:
        return self._operate("start", name, zone)

    def stop(self, name: str, zone: str | None = None) -> str:
        return self._operate("stop", name, zone)


def _local_gpu_models() -> list[str]:
    """The model of each GPU NVML sees here; none without a driver."""
    nvml = Nvml()
    try:
        return [device.name for device in nvml.devices()]
    except NvmlUnavailable:
        return []
    finally:
        nvml.close()


class LocalHost:
    """This machine, for the embedded stack: it can be described but not started or stopped from here."""

    provider = "local"

    def list(self) -> list[VmInstance]:
        memory = psutil.virtual_memory()
        models = Counter(_local_gpu_models())
        return [
            VmInstance(
                name=socket.gethostname(),
                zone="local",
                status="RUNNING",
                machine_type=f"{os.cpu_count()} vCPU, {memory.total / 2**30:.1f} GiB",
                gpus=[f"{count} × {model}" for model, count in models.items()],
                last_start=datetime.fromtimestamp(psutil.boot_time(), UTC),
                details={"cpu_percent": psutil.cpu_percent(interval=0.2), "memory_percent": memory.percent},
            )
        ]

    def start(self, name: str, zone: str | None = None) -> str:
        raise InvalidInput("the local provider describes this host only: set VM_PROVIDER=gcp to start VMs")

    def stop(self, name: str, zone: str | None = None) -> str:
        raise InvalidInput("the local provider describes this host only: set VM_PROVIDER=gcp to stop VMs")
