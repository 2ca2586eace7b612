"""One SGLang engine as a Ray actor in its own bundles (``slime.ray.engine_placement``): the actor starts the server on
its node with the devices and CPU threads of its slot, and the rollout engine talks to it through ``EngineServer``.
"""

from dataclasses import replace

import ray

from slime.ray.engine_placement import EnginePlacer, EngineSlot
from slime.ray.threads import use_cpu_threads
from slime_sglang.processes import free_port
from slime_sglang.server import ServerConfig, SGLangServer

CALL_TIMEOUT = 120.0  # seconds for a control call to an engine actor (beyond what the call itself may take)


class SGLangServerActor:
    """Runs in the engine's first bundle: its SGLang server is a subprocess of this actor, on this node."""

    def __init__(self, slot: EngineSlot, config: ServerConfig) -> None:
        use_cpu_threads(slot.threads)  # the server inherits them (Ray set OMP_NUM_THREADS=1 here)
        # Reachable by the router and the trainer: loopback when everything runs on one node, else this node's address.
        host = ray.util.get_node_ip_address() if slot.bind_node_ip else "127.0.0.1"
        config = replace(config, host=host, port=free_port(host), nccl_port=free_port(host), gpu_ids=slot.gpu_ids)
        self.server = SGLangServer(config)

    def launch(self, timeout: float) -> tuple[str, int, str]:
        """Start the server and wait until it generates; its URL, its main pid and this node's Ray id."""
        self.server.launch(timeout)
        return self.server.url, self.server.pid, ray.get_runtime_context().get_node_id()

    def healthy(self, timeout: float) -> bool:
        return self.server.healthy(timeout)

    def running(self) -> bool:
        return self.server.running()

    def exit_code(self) -> int | None:
        return self.server.process.exit_code()

    def pids(self) -> list[int]:
        return self.server.pids()

    def shutdown(self) -> None:
        self.server.shutdown()


class EngineServer:
    """The rollout engine's handle on one engine actor and its server."""

    def __init__(self, placer: EnginePlacer, index: int, config: ServerConfig) -> None:
        self.index = index
        self.config = config  # log path and TP size; host and port are chosen in the actor
        self.actor = placer.start(SGLangServerActor, index, config)
        self.gpu_ids = list(placer.slots[index].gpu_ids)  # on its node; none on CPU
        self.url = ""
        self.pid: int | None = None
        self.node_id: str | None = None

    def launch(self, timeout: float) -> "ray.ObjectRef":
        """Start the server (``wait_launched`` collects it), so several engines start at once."""
        return self.actor.launch.remote(timeout)

    def wait_launched(self, launch: "ray.ObjectRef") -> None:
        self.url, self.pid, self.node_id = ray.get(launch)

    def _call(self, method: str, *args, timeout: float = CALL_TIMEOUT):
        return ray.get(getattr(self.actor, method).remote(*args), timeout=timeout)

    def healthy(self, timeout: float) -> bool:
        """The actor is alive, its server runs and generates one token within ``timeout`` seconds."""
        try:
            return self._call("healthy", timeout, timeout=timeout + CALL_TIMEOUT)
        except (ray.exceptions.RayError, TimeoutError):
            return False

    def running(self) -> bool:
        try:
            return self._call("running")
        except (ray.exceptions.RayError, TimeoutError):
            return False

    def exit_code(self) -> int | None:
        """The server's exit code; None while it runs or when its actor is gone with it."""
        try:
            return self._call("exit_code")
        except (ray.exceptions.RayError, TimeoutError):
            return None

    def pids(self) -> list[int]:
        try:
            return self._call("pids")
        except (ray.exceptions.RayError, TimeoutError):
            return []

    def shutdown(self) -> None:
        """Stop the server and every child (raises if one survives), then end the actor."""
        try:
            self._call("shutdown", timeout=CALL_TIMEOUT)
        except (ray.exceptions.RayActorError, ray.exceptions.WorkerCrashedError):
            pass  # the actor died, and its server with it (``slime_sglang.parent_watch``)
        finally:
            ray.kill(self.actor)
