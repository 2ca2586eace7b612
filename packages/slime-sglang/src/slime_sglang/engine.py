"""``SGLangRolloutEngine``: N SGLang servers behind one sglang-router, as slime's ``RolloutEngine``.

Each server runs in an engine actor in its own bundles (``slime_sglang.engine_actor``), started, checked, restarted
and stopped through that actor; the router is a subprocess of this process (the rollout manager). It attaches to
what it is given (``--sglang-router-ip/port``, ``--rollout-external-engine-addrs``). Importing this module stays
cheap (no torch): it is registered on every ``slime`` command.
"""

import argparse
import asyncio
import logging
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from slime.ray.engine_placement import EnginePlacer
from slime.types import Sample
from slime_sglang import weight_updates
from slime_sglang.client import GenerateClient
from slime_sglang.control_http import generates
from slime_sglang.engine_actor import EngineServer
from slime_sglang.errors import EngineDiedError, SGLangError
from slime_sglang.health import HealthMonitor
from slime_sglang.router import RouterClient, SGLangRouter
from slime_sglang.server import ServerConfig

if TYPE_CHECKING:  # both import torch; this module must stay cheap to import
    import torch

    from slime_sglang.weight_updates import DistributedWeightSender, SGLangWeightReceiver

logger = logging.getLogger(__name__)


def cpu_mode(args: argparse.Namespace) -> bool:
    """CPU mode: ``--sglang-device cpu``, or no device given and no GPU present."""
    device = getattr(args, "sglang_device", None)
    if device is not None:
        return device == "cpu"
    import torch

    return not torch.cuda.is_available()


class SGLangRolloutEngine:
    """N SGLang engines behind one router; see ``slime.backends.RolloutEngine``."""

    def __init__(self, args: argparse.Namespace, placer: EnginePlacer | None = None) -> None:
        if not args.hf_checkpoint and not args.rollout_external_engine_addrs:
            raise SGLangError("rollout backend 'sglang' needs --hf-checkpoint (the model the engines serve)")
        self.args = args
        self.placer = placer or EnginePlacer(args)  # where each engine runs; without a placement, anywhere
        self.cpu = False
        self.log_dir = Path(args.output_dir) / "sglang"
        self.servers: list[EngineServer] = []
        self.external_urls = [f"http://{a}" for a in args.rollout_external_engine_addrs or []]
        self.router: RouterClient | None = None
        self.client: GenerateClient | None = None
        self.monitor: HealthMonitor | None = None
        # What a restarted engine loads: the last weights pushed from disk. When the trainer has pushed newer ones
        # through a receiver since, a restarted engine stays out of the router until the next update reaches it.
        self.weights_path = args.hf_checkpoint
        self.weights_path_is_latest = True
        self.weight_version: str | None = None
        self.awaiting_weights: list[EngineServer] = []  # restarted engines not serving yet
        self._receiver_urls: set[str] = set()  # the engines the last weight_receiver() covers
        self._lock = threading.RLock()  # engine list changes (restarts) vs readers

    # ---- lifecycle ----

    def start(self) -> None:
        """Launch the router and the engines (in parallel), register them, start the health monitor if asked."""
        args = self.args
        self.cpu = cpu_mode(args)
        try:
            if args.sglang_router_ip:
                if args.sglang_router_port is None:
                    raise SGLangError("--sglang-router-ip needs --sglang-router-port")
                self.router = RouterClient(args.sglang_router_ip, args.sglang_router_port)
            else:
                router = SGLangRouter(
                    self.log_dir / "router.log", port=args.sglang_router_port, policy=args.sglang_router_policy
                )
                self.router = router
                router.launch()
                # As in slime: custom generate functions post to the router through these (this process's args).
                args.sglang_router_ip, args.sglang_router_port = router.host, router.port
            count = len(self.placer.slots) if args.hf_checkpoint else 0
            self.servers = [EngineServer(self.placer, i, self._server_config(i)) for i in range(count)]
            launches = [server.launch(args.sglang_server_start_timeout) for server in self.servers]
            for server, launch in zip(self.servers, launches, strict=True):
                server.wait_launched(launch)
            for url in self.engine_urls:
                self.router.add_worker(url)
        except BaseException:
            self.shutdown()
            raise
        concurrency = args.sglang_server_concurrency * max(1, len(self.engine_urls))
        self.client = GenerateClient(
            self.router.url,
            concurrency,
            args.sglang_request_retry_timeout,
            check_engines=self._check_engines,
            return_routed_experts=args.use_rollout_routing_replay,
        )
        if args.use_fault_tolerance:
            self.monitor = HealthMonitor(
                check=self._check_health,
                restart=self.restart_engine,
                num_engines=lambda: len(self.servers),
                interval=args.rollout_health_check_interval,
                first_wait=args.rollout_health_check_first_wait,
            )
            self.monitor.start()

    def _server_config(self, index: int, model_path: str | None = None) -> ServerConfig:
        args = self.args
        return ServerConfig(
            model_path=model_path or args.hf_checkpoint,
            port=0,  # host and ports are chosen on the engine's node (``SGLangServerActor``)
            log_path=self.log_dir / f"engine_{index}.log",
            seed=args.seed + index * args.num_gpus_per_node,  # slime's: engines' seeds a node's GPUs apart
            tp_size=args.rollout_num_gpus_per_engine,
            cpu=self.cpu,
            enable_memory_saver=bool(args.offload_rollout) and not self.cpu,
            sglang_args=list(args.sglang_server_args),
            return_routed_experts=args.use_rollout_routing_replay,
        )

    def shutdown(self) -> None:
        """Stop the monitor, every engine and the router slime launched; no process is left behind."""
        if self.monitor is not None:
            self.monitor.stop()
        if self.client is not None:
            self.client.close()
        errors = []
        for server in self.servers:
            try:
                server.shutdown()
            except Exception as exc:
                errors.append(exc)
        if isinstance(self.router, SGLangRouter):
            self.router.shutdown()
        if errors:
            raise SGLangError(f"shutdown left processes behind: {errors[0]}")

    # ---- addresses ----

    @property
    def engine_urls(self) -> list[str]:
        with self._lock:
            return [s.url for s in self.servers] + self.external_urls

    @property
    def tp_sizes(self) -> list[int]:
        return [s.config.tp_size for s in self.servers] + [1] * len(self.external_urls)

    def pids(self) -> list[int]:
        """Every process slime started for this engine group (servers with their children, router); engines may run
        on other nodes."""
        found = [pid for s in self.servers for pid in s.pids()]
        if isinstance(self.router, SGLangRouter):
            found += self.router.process.pids()
        return found

    # ---- generation ----

    async def generate(self, sample: Sample, sampling_params: dict[str, Any]) -> Sample:
        if self.client is None:
            raise SGLangError("SGLangRolloutEngine.generate called before start()")
        if self.args.sglang_enable_deterministic_inference:
            # One seed per sample (slime's rule): a rerun with the same --rollout-seed draws the same tokens.
            sampling_params = {**sampling_params, "sampling_seed": self.args.rollout_seed + sample.index}
        return await self.client.generate(sample, sampling_params)

    async def generate_group(self, samples: list[Sample], sampling_params: dict[str, Any]) -> list[Sample]:
        if self.client is None:
            raise SGLangError("SGLangRolloutEngine.generate_group called before start()")
        if self.args.sglang_enable_deterministic_inference:
            # Seeds are per sample, and SGLang's ``n`` takes one: a request each.
            return list(await asyncio.gather(*(self.generate(sample, sampling_params) for sample in samples)))
        return await self.client.generate_group(samples, sampling_params)

    async def abort(self) -> None:
        if self.client is None:
            return
        workers = await asyncio.to_thread(self.router.worker_urls)
        await self.client.abort(workers)

    def _check_engines(self) -> None:
        """After a failed request: without fault tolerance, an engine whose process ended is a clear error."""
        if self.args.use_fault_tolerance:
            if self.monitor is not None and self.monitor.last_error is not None:
                raise EngineDiedError(f"an engine could not be restarted: {self.monitor.last_error}")
            return
        for index, server in enumerate(self.servers):
            if not server.running():
                code = server.exit_code()
                raise EngineDiedError(
                    f"engine {index} ({server.url}) "
                    f"{'ended with its engine actor' if code is None else f'exited with code {code}'}; "
                    f"log {server.config.log_path}. Pass --use-fault-tolerance to restart dead engines"
                )

    def health(self) -> list[bool]:
        """One ``/health_generate`` per engine (slime's own, then external ones)."""
        timeout = self.args.rollout_health_check_timeout
        own = [s.healthy(timeout) for s in self.servers]
        return own + [generates(url, timeout) for url in self.external_urls]

    def _check_health(self, index: int) -> bool:
        # Under the lock: a weight update pauses generation, and a paused engine must not look dead.
        with self._lock:
            return self.servers[index].healthy(self.args.rollout_health_check_timeout)

    def restart_engine(self, index: int) -> None:
        """Replace engine ``index`` with a fresh actor in the same bundles, serving the latest weights, and
        re-register it."""
        with self._lock:
            old = self.servers[index]
            try:
                self.router.remove_worker(old.url)
            except Exception as exc:  # a router that lost it already is fine
                logger.warning("removing %s from the router: %s", old.url, exc)
            old.shutdown()
            server = EngineServer(self.placer, index, self._server_config(index, model_path=self.weights_path))
            self.servers[index] = server  # shut down with the others if its start fails
            server.wait_launched(server.launch(self.args.sglang_server_start_timeout))
            if not self.weights_path_is_latest:
                self.awaiting_weights.append(server)
                logger.warning(
                    "engine %d restarted at %s; it serves once the next weight update reaches it", index, server.url
                )
                return
            if self.weight_version is not None:
                weight_updates.post(server.url, "/update_weight_version", {"new_version": self.weight_version})
            self.router.add_worker(server.url)
            logger.warning("engine %d restarted at %s", index, server.url)

    # ---- weights ----

    def update_weights_from_disk(self, path: str, weight_version: str) -> None:
        with self._lock:
            urls = [s.url for s in self._updatable_servers()] + self.external_urls
            weight_updates.update_weights_from_disk(urls, str(path), weight_version)
            self.weights_path = str(path)
            self.weights_path_is_latest = True
            self.weight_version = weight_version
            self._serve_restarted(urls)

    def distributed_sender(
        self, backend: str | None = None, master_address: str = "127.0.0.1"
    ) -> "DistributedWeightSender":
        """The trainer's end of a weight-update group over every engine (gloo on CPU, nccl on GPU); ``connect()`` it.

        A restarted engine is not in the group: create a new sender after a restart.
        """
        from slime_sglang.weight_updates import DistributedWeightSender

        backend = backend or ("gloo" if self.cpu else "nccl")
        return DistributedWeightSender(self.engine_urls, self.tp_sizes, master_address, backend=backend)

    def weight_receiver(self) -> "SGLangWeightReceiver":
        """What the trainer sends weights through: shared memory to CPU engines on the sender's node, CUDA IPC to GPU
        engines on the sender's GPU (``--colocate``), a broadcast group (gloo on CPU, nccl on GPU) to the others.
        External engines' nodes are not known: broadcast."""
        from slime_sglang.weight_updates import SGLangWeightReceiver

        backend = "gloo" if self.cpu else "nccl"
        with self._lock:  # waits for a restart in progress, so the restarted engine is covered
            servers = self._updatable_servers()
            urls = [s.url for s in servers] + self.external_urls
            tp_sizes = [s.config.tp_size for s in servers] + [1] * len(self.external_urls)
            nodes = [s.node_id for s in servers] + [None] * len(self.external_urls)
            gpus = [s.gpu_ids for s in servers] + [[] for _ in self.external_urls]
            self._receiver_urls = set(urls)
        return SGLangWeightReceiver(
            urls, tp_sizes, nodes, backend, self.args.update_weight_buffer_size, shared_memory=self.cpu,
            engine_gpus=gpus,
        )  # fmt: skip

    def weights_updated(self, weight_version: str) -> None:
        """The trainer's update through the last ``weight_receiver()`` reached its engines: restarted engines among
        them serve again."""
        with self._lock:
            self.weights_path_is_latest = False
            self.weight_version = weight_version
            self._serve_restarted(self._receiver_urls)

    def _updatable_servers(self) -> list[EngineServer]:
        """The servers a weight update goes to: all of them, or with --use-fault-tolerance the running ones (a dead
        engine is the health monitor's to restart; it gets the newest weights from disk or from a later update)."""
        if self.args.use_fault_tolerance:
            return [s for s in self.servers if s.running()]
        return list(self.servers)

    def _serve_restarted(self, updated_urls: Iterable[str]) -> None:
        updated = set(updated_urls)
        for server in [s for s in self.awaiting_weights if s.url in updated]:
            self.router.add_worker(server.url)
            self.awaiting_weights.remove(server)
            logger.warning("restarted engine at %s has the latest weights and serves again", server.url)

    def update_weights_from_distributed(
        self,
        sender: "DistributedWeightSender",
        named_tensors: Iterable[tuple[str, "torch.Tensor"]],
        weight_version: str,
    ) -> None:
        """Broadcast ``named_tensors`` (HF names) through ``sender`` in ``--update-weight-buffer-size`` buckets."""
        with self._lock:
            sender.update(named_tensors, weight_version, self.args.update_weight_buffer_size)
            self.weights_path_is_latest = False
            self.weight_version = weight_version

    def update_weights_from_tensors(
        self, named_tensors: Iterable[tuple[str, "torch.Tensor"]], weight_version: str
    ) -> None:
        """Engines on this host: tensors through shared memory, in ``--update-weight-buffer-size`` buckets."""
        from slime_sglang.weight_updates import SharedMemoryWeightSender

        with self._lock:
            sender = SharedMemoryWeightSender(self.engine_urls, self.tp_sizes)
            try:
                sender.update(named_tensors, weight_version, self.args.update_weight_buffer_size)
            finally:
                sender.close()
            self.weights_path_is_latest = False
            self.weight_version = weight_version

    def flush_cache(self) -> None:
        weight_updates.flush_cache(self.engine_urls)

    def pause_generation(self) -> None:
        weight_updates.pause_generation(self.engine_urls)

    def continue_generation(self) -> None:
        weight_updates.continue_generation(self.engine_urls)

    # ---- memory ----

    def release_memory(self) -> None:
        """Give the engines' device memory (weights, KV cache, CUDA graphs) to a colocated trainer. On CPU the cache
        is flushed and nothing more: there is no device memory, and /release_memory_occupation kills a CPU server."""
        weight_updates.flush_cache(self.engine_urls)
        if not self.cpu:
            weight_updates.on_all(self.engine_urls, "/release_memory_occupation", {})

    def resume_memory(self, tags: list[str] | None = None) -> None:
        """Resume everything, or only ``tags`` (``["weights"]`` then ``["kv_cache"]`` lets weights load first; the
        KV cache comes back with its CUDA graphs). Nothing was released on CPU."""
        if self.cpu:
            return
        if tags is not None and "kv_cache" in tags:
            tags = [*tags, "cuda_graph"]
        weight_updates.on_all(self.engine_urls, "/resume_memory_occupation", {"tags": tags} if tags else {})
