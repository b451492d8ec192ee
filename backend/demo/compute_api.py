"""A loopback Compute Engine REST API (instances and zone operations) and GCE metadata server for one project.

It serves the real wire format, so the official google-cloud-compute client runs unmodified against it (with
`ClientOptions(api_endpoint="http://127.0.0.1:PORT")` and anonymous credentials): the demo serves its simulated
fleet with it (`COMPUTE_ENDPOINT`), and the tests use it as their Compute fake. Every call is recorded.
"""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

_INSTANCE = re.compile(
    r"^/compute/v1/projects/(?P<p>[^/]+)/zones/(?P<z>[^/]+)/instances/(?P<n>[^/]+)(?:/(?P<verb>start|stop))?$"
)
_OPERATION = re.compile(r"^/compute/v1/projects/(?P<p>[^/]+)/zones/(?P<z>[^/]+)/operations/(?P<op>[^/]+)$")
_AGGREGATED = re.compile(r"^/compute/v1/projects/(?P<p>[^/]+)/aggregated/instances$")


@dataclass
class ComputeApi:
    project: str = "demo-project"
    zone: str = "europe-west4-a"
    name: str = "stream-gpu-1"
    instances: dict[str, dict[str, Any]] = field(default_factory=dict)
    calls: list[tuple[str, str]] = field(default_factory=list)
    _server: ThreadingHTTPServer | None = None

    def add(self, name: str, zone: str, *, status: str = "RUNNING", labels: dict[str, str] | None = None,
            machine_type: str = "g2-standard-8", gpus: int = 0, accelerator: str = "nvidia-l4",
            started: str = "2026-11-25T06:00:00.000-08:00") -> None:
        base = f"https://www.googleapis.com/compute/v1/projects/{self.project}/zones/{zone}"
        self.instances[name] = {
            "kind": "compute#instance", "id": str(1000 + len(self.instances)), "name": name,
            "zone": base, "status": status, "machineType": f"{base}/machineTypes/{machine_type}",
            "labels": labels or {}, "lastStartTimestamp": started,
            "guestAccelerators": [{"acceleratorType": f"{base}/acceleratorTypes/{accelerator}",
                                   "acceleratorCount": gpus}] if gpus else [],
        }

    @property
    def address(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"{host}:{port}"

    @property
    def endpoint(self) -> str:
        return f"http://{self.address}"

    def start(self) -> ComputeApi:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                return

            def _send(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
                data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
                self.send_response(status)
                for key, value in (headers or {"Content-Type": "application/json"}).items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                self._route("GET")

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                self._route("POST")

            def _route(self, method: str) -> None:
                url = urlsplit(self.path)
                fake.calls.append((method, self.path))
                if url.path.startswith("/computeMetadata/v1/"):
                    return self._metadata(url.path.removeprefix("/computeMetadata/v1/"))
                if (m := _AGGREGATED.match(url.path)) and method == "GET":
                    return self._send(200, fake._aggregated(parse_qs(url.query).get("filter", [""])[0]))
                if (m := _INSTANCE.match(url.path)) and (method == "POST") == bool(m["verb"]):
                    return self._instance(m["p"], m["z"], m["n"], m["verb"])
                if (m := _OPERATION.match(url.path)) and method == "GET":
                    return self._send(200, fake._operation(m["z"], m["op"], "unknown", ""))
                return self._send(404, {"error": {"code": 404, "message": f"no route {url.path}", "errors": []}})

            def _metadata(self, path: str) -> None:
                if self.headers.get("Metadata-Flavor") != "Google":
                    return self._send(403, "Missing Metadata-Flavor:Google header", {"Content-Type": "text/plain"})
                values = {
                    "project/project-id": fake.project,
                    "instance/zone": f"projects/123456789/zones/{fake.zone}",
                    "instance/name": fake.name,
                }
                if path not in values:
                    return self._send(404, "not found", {"Content-Type": "text/plain"})
                return self._send(200, values[path], {"Content-Type": "application/text", "Metadata-Flavor": "Google"})

            def _instance(self, project: str, zone: str, name: str, verb: str | None) -> None:
                instance = fake.instances.get(name)
                if project != fake.project or instance is None or not instance["zone"].endswith(f"/zones/{zone}"):
                    message = f"The resource 'projects/{project}/zones/{zone}/instances/{name}' was not found"
                    return self._send(404, {"error": {"code": 404, "message": message, "errors": []}})
                if verb is None:
                    return self._send(200, instance)
                if verb == "start" and instance["status"] != "RUNNING":
                    instance["lastStartTimestamp"] = datetime.now(UTC).isoformat(timespec="milliseconds")
                instance["status"] = "RUNNING" if verb == "start" else "TERMINATED"
                return self._send(200, fake._operation(zone, f"operation-{verb}-{name}", verb, name))

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def status(self, name: str) -> str:
        """An instance's status as the API reports it (RUNNING, TERMINATED)."""
        return self.instances[name]["status"]

    def last_start(self, name: str) -> datetime:
        return datetime.fromisoformat(self.instances[name]["lastStartTimestamp"])

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def _aggregated(self, filter_text: str) -> dict[str, Any]:
        wanted = re.match(r"^labels\.(?P<k>[\w-]+)\s*=\s*(?P<v>\S+)$", filter_text.strip())
        items: dict[str, dict[str, list[Any]]] = {}
        for instance in self.instances.values():
            if wanted and instance["labels"].get(wanted["k"]) != wanted["v"]:
                continue
            scope = "zones/" + instance["zone"].rsplit("/", 1)[-1]
            items.setdefault(scope, {"instances": []})["instances"].append(instance)
        return {"kind": "compute#instanceAggregatedList", "items": items}

    def _operation(self, zone: str, name: str, kind: str, target: str) -> dict[str, Any]:
        base = f"https://www.googleapis.com/compute/v1/projects/{self.project}/zones/{zone}"
        return {
            "kind": "compute#operation", "id": "42", "name": name, "operationType": kind, "status": "DONE",
            "progress": 100, "zone": base, "targetLink": f"{base}/instances/{target}",
            "selfLink": f"{base}/operations/{name}",
        }

    def verb_calls(self, verb: str) -> list[str]:
        """Paths of the start/stop calls made, in order."""
        return [path for method, path in self.calls if method == "POST" and path.endswith(f"/{verb}")]
