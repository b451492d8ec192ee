"""A fake Docker Engine API on a unix socket: enough of the real wire protocol for the docker SDK's container
list, inspect, logs (multiplexed stream frames) and restart. Every call is recorded."""

from __future__ import annotations

import json
import re
import socketserver
import struct
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

API_VERSION = "1.44"
_VERSIONED = re.compile(r"^/v\d+\.\d+(?P<rest>/.*)$")
_CONTAINER = re.compile(r"^/containers/(?P<ref>[^/]+)/(?P<verb>json|logs|restart)$")


class _UnixServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


@dataclass
class FakeDockerEngine:
    socket_path: Path
    containers: dict[str, dict[str, Any]] = field(default_factory=dict)
    logs: dict[str, list[tuple[int, str]]] = field(default_factory=dict)
    calls: list[tuple[str, str]] = field(default_factory=list)
    _server: _UnixServer | None = None

    @property
    def base_url(self) -> str:
        return f"unix://{self.socket_path}"

    def add(self, name: str, *, image: str = "nginx:1.27", status: str = "running", health: str | None = "healthy",
            restarts: int = 0, started: str = "2026-11-25T07:00:00.123456789Z",
            lines: tuple[tuple[int, str], ...] = ()) -> str:
        cid = f"{len(self.containers) + 1:02d}" + "ab" * 31
        state: dict[str, Any] = {"Status": status, "Running": status == "running", "StartedAt": started,
                                 "FinishedAt": "0001-01-01T00:00:00Z", "ExitCode": 0}
        if health:
            state["Health"] = {"Status": health, "FailingStreak": 0, "Log": []}
        self.containers[cid] = {
            "Id": cid, "Name": f"/{name}", "Created": "2026-11-25T06:59:00Z", "RestartCount": restarts,
            "State": state, "Config": {"Image": image, "Tty": False, "Labels": {}}, "Image": "sha256:" + "c" * 64,
        }
        self.logs[cid] = list(lines)
        return cid

    def _find(self, ref: str) -> dict[str, Any] | None:
        for cid, container in self.containers.items():
            if ref in (cid, container["Name"].lstrip("/")) or (len(ref) >= 12 and cid.startswith(ref)):
                return container
        return None

    def _summary(self, c: dict[str, Any]) -> dict[str, Any]:
        return {"Id": c["Id"], "Names": [c["Name"]], "Image": c["Config"]["Image"], "State": c["State"]["Status"],
                "Status": f"Up ({c['State'].get('Health', {}).get('Status', 'no health')})", "Labels": {}}

    def start(self) -> FakeDockerEngine:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                return

            def _send(self, status: int, body: bytes | Any, content_type: str = "application/json") -> None:
                data = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Api-Version", API_VERSION)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                self._route("GET")

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                self._route("POST")

            def _route(self, method: str) -> None:
                url = urlsplit(self.path)
                fake.calls.append((method, self.path))
                path = (m["rest"] if (m := _VERSIONED.match(url.path)) else url.path)
                query = parse_qs(url.query)
                if path == "/version":
                    return self._send(200, {"ApiVersion": API_VERSION, "Version": "27.3.1", "MinAPIVersion": "1.24"})
                if path == "/_ping":
                    return self._send(200, b"OK", "text/plain")
                if path == "/containers/json" and method == "GET":
                    every = query.get("all", ["0"])[0] in ("1", "true", "True")
                    chosen = [c for c in fake.containers.values() if every or c["State"]["Running"]]
                    return self._send(200, [fake._summary(c) for c in chosen])
                match = _CONTAINER.match(path)
                container = fake._find(match["ref"]) if match else None
                if match is None:
                    return self._send(404, {"message": f"page not found: {path}"})
                if container is None:
                    return self._send(404, {"message": f"No such container: {match['ref']}"})
                if match["verb"] == "json" and method == "GET":
                    return self._send(200, container)
                if match["verb"] == "logs" and method == "GET":
                    tail = query.get("tail", ["all"])[0]
                    lines = fake.logs[container["Id"]]
                    lines = lines if tail == "all" else lines[-int(tail):] if int(tail) else []
                    frames = b"".join(struct.pack(">BxxxL", stream, len(text.encode() + b"\n")) + text.encode() + b"\n"
                                      for stream, text in lines)
                    return self._send(200, frames, "application/vnd.docker.multiplexed-stream")
                if match["verb"] == "restart" and method == "POST":
                    container["RestartCount"] += 1
                    container["State"].update(Status="running", Running=True, StartedAt="2026-11-25T08:00:00Z")
                    self.send_response(204)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return None
                return self._send(405, {"message": "method not allowed"})

        self._server = _UnixServer(str(self.socket_path), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self.socket_path.unlink(missing_ok=True)
