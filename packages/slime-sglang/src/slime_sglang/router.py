"""sglang-router in front of the engines: launch it, register and remove workers, list them.

The router's own health checks and circuit breaker are off: slime's health monitor decides when an engine is dead
(``--use-fault-tolerance``), and a router that silently drops a slow CPU worker would hide that decision.
"""

import sys
import time
from pathlib import Path

import httpx

from slime_sglang.control_http import control_client
from slime_sglang.errors import ServerStartError, SGLangError
from slime_sglang.processes import ManagedProcess, free_port, tail


class RouterClient:
    """Talks to a running sglang-router (one slime launched, or one given by ``--sglang-router-ip/port``)."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def _workers(self) -> list[dict]:
        response = control_client().get(self.url + "/workers", timeout=30)
        response.raise_for_status()
        return response.json()["workers"]

    def worker_urls(self) -> list[str]:
        return [w["url"] for w in self._workers()]

    def add_worker(self, url: str, timeout: float = 120.0) -> None:
        """Register ``url`` and wait until the router lists it (the router adds workers in the background).

        A router someone else started may list it already (``--sglang-router-ip`` with engines registered there)."""
        if url in self.worker_urls():
            return
        response = control_client().post(self.url + "/workers", json={"url": url}, timeout=30)
        if response.status_code >= 400:
            raise SGLangError(f"router {self.url} refused worker {url}: HTTP {response.status_code} {response.text}")
        deadline = time.monotonic() + timeout
        while url not in self.worker_urls():
            if time.monotonic() > deadline:
                raise SGLangError(f"router {self.url} did not list worker {url} within {timeout:.0f} s")
            time.sleep(0.2)

    def remove_worker(self, url: str, timeout: float = 60.0) -> None:
        """Unregister ``url`` (by the id the router gave it) and wait until it is gone; no-op if not listed."""
        for worker in self._workers():
            if worker["url"] == url:
                control_client().delete(f"{self.url}/workers/{worker['id']}", timeout=30)
        deadline = time.monotonic() + timeout
        while url in self.worker_urls():
            if time.monotonic() > deadline:
                raise SGLangError(f"router {self.url} still lists worker {url} after {timeout:.0f} s")
            time.sleep(0.2)


class SGLangRouter(RouterClient):
    """An sglang-router process slime launched; it has its own Prometheus port (two routers on the default panic)."""

    def __init__(
        self,
        log_path: Path,
        host: str = "127.0.0.1",
        port: int | None = None,
        policy: str = "round_robin",
        prometheus_port: int | None = None,
    ) -> None:
        super().__init__(host, port or free_port(host))
        self.log_path = log_path
        self.prometheus_port = prometheus_port or free_port(host)
        command = [sys.executable, "-m", "slime_sglang.router_main", "--host", host, "--port", str(self.port)]
        # The metrics port too: left unset, sglang-router serves it on every interface (0.0.0.0, measured).
        command += ["--prometheus-host", host, "--prometheus-port", str(self.prometheus_port)]
        command += ["--policy", policy, "--log-level", "warn"]
        # A long generation on a slow engine must not be cut by the router.
        command += ["--request-timeout-secs", "14400", "--disable-circuit-breaker", "--disable-health-check"]
        self.process = ManagedProcess(command, log_path)

    def launch(self, timeout: float = 120.0) -> None:
        self.process.start()
        deadline = time.monotonic() + timeout
        while True:
            code = self.process.exit_code()
            if code is not None:
                self._fail(f"exited with code {code} during start-up")
            try:
                if control_client().get(self.url + "/health", timeout=5).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                self._fail(f"did not answer /health within {timeout:.0f} s")
            time.sleep(0.2)

    def _fail(self, what: str) -> None:
        self.process.stop()
        log = self.log_path
        raise ServerStartError(f"sglang-router {self.url} {what}; log {log}, last lines:\n{tail(log)}")

    def running(self) -> bool:
        return self.process.running()

    def shutdown(self) -> None:
        self.process.stop()
