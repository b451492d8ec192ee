"""Who am I on Compute Engine: project, zone and instance name from the metadata server.

`GCE_METADATA_HOST` (the variable Google's own libraries honour) points at another server; tests use a fake.
"""

from __future__ import annotations

from dataclasses import dataclass

import httpx

from backend.errors import Unavailable

_HEADERS = {"Metadata-Flavor": "Google"}


@dataclass(frozen=True)
class InstanceIdentity:
    project: str
    zone: str
    name: str

    @property
    def path(self) -> str:
        return f"projects/{self.project}/zones/{self.zone}/instances/{self.name}"


def _get(client: httpx.Client, host: str, path: str) -> str:
    response = client.get(f"http://{host}/computeMetadata/v1/{path}", headers=_HEADERS)
    response.raise_for_status()
    if response.headers.get("Metadata-Flavor") != "Google":
        raise Unavailable(f"{host} is not a GCE metadata server (no Metadata-Flavor: Google header)")
    return response.text.strip()


def this_instance(host: str = "metadata.google.internal", timeout: float = 3.0) -> InstanceIdentity:
    """This VM's identity; `Unavailable` off Compute Engine."""
    try:
        with httpx.Client(timeout=timeout) as client:
            project = _get(client, host, "project/project-id")
            zone = _get(client, host, "instance/zone").rsplit("/", 1)[-1]
            name = _get(client, host, "instance/name")
    except httpx.HTTPError as exc:
        raise Unavailable(
            f"the GCE metadata server at {host} did not answer ({type(exc).__name__}): is this a Compute Engine VM?"
        ) from None
    return InstanceIdentity(project, zone, name)
