"""Weight updates into running SGLang engines: from disk, over a torch.distributed group, through shared memory.

Every update pauses generation (in-flight requests are retracted and resume on the new weights), flushes the prefix
cache (its KV entries were computed with the old weights), loads, then continues generation.
"""

from __future__ import annotations

import atexit
import base64
import datetime
import io
import logging
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import TYPE_CHECKING

import httpx

from slime_sglang.control_http import control_client
from slime_sglang.errors import SGLangError
from slime_sglang.shm_watch import remove_torch_shm_after_exit

logger = logging.getLogger(__name__)

if TYPE_CHECKING:  # torch is imported where tensors are handled, so importing this module stays cheap
    import torch

CONTROL_TIMEOUT = 600.0  # seconds; loading weights into a busy CPU engine is slow


def post(url: str, path: str, payload: dict | None = None, timeout: float = CONTROL_TIMEOUT) -> httpx.Response:
    """POST a control request to one engine; raise ``SGLangError`` with SGLang's message unless it succeeded."""
    try:
        response = control_client().post(url + path, json=payload or {}, timeout=timeout)
    except httpx.HTTPError as exc:
        raise SGLangError(f"{path} on engine {url} failed: {type(exc).__name__}: {exc}") from exc
    if response.status_code != 200:
        raise SGLangError(f"{path} on engine {url} failed: HTTP {response.status_code} {response.text[:500]}")
    return response


def on_all(urls: list[str], path: str, payload: dict | None = None) -> None:
    """The same control request on every engine, concurrently."""
    on_each(path, dict.fromkeys(urls, payload))


def on_each(path: str, payloads: dict[str, dict | None]) -> None:
    """``payloads[url]`` to each engine, concurrently."""
    with posting_to_each(path, payloads):
        pass


@contextmanager
def posting_to_each(path: str, payloads: dict[str, dict | None]) -> Iterator[None]:
    """POST ``payloads[url]`` to each engine in the background; the block runs meanwhile (e.g. the sender's side of
    a broadcast the engines wait for), and on leaving it every request must have succeeded."""
    with ThreadPoolExecutor(max(1, len(payloads))) as pool:
        requests = [pool.submit(post, url, path, payload) for url, payload in payloads.items()]
        yield
        for request in requests:
            request.result()


def pause_generation(urls: list[str]) -> None:
    # "retract": running requests go back to the queue and are recomputed after the update (none is lost).
    on_all(urls, "/pause_generation", {"mode": "retract"})


def continue_generation(urls: list[str]) -> None:
    on_all(urls, "/continue_generation", {})


def flush_cache(urls: list[str], timeout: float = 60.0) -> None:
    """Drop every engine's prefix cache; SGLang refuses while requests run, so retry until ``timeout``."""
    for url in urls:
        deadline = time.monotonic() + timeout
        while True:
            try:
                if control_client().post(url + "/flush_cache", timeout=30).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise SGLangError(f"/flush_cache on engine {url} did not succeed within {timeout:.0f} s")
            time.sleep(0.5)


def weight_version(url: str) -> str:
    response = control_client().get(url + "/get_model_info", timeout=30)
    response.raise_for_status()
    return str(response.json()["weight_version"])


def update_weights_from_disk(urls: list[str], path: str, version: str) -> None:
    """Load an HF safetensors directory into every engine."""
    pause_generation(urls)
    try:
        flush_cache(urls)
        on_all(urls, "/update_weights_from_disk", {"model_path": path, "weight_version": version})
    finally:
        continue_generation(urls)


@contextmanager
def weight_update_session(urls: list[str]) -> Iterator[None]:
    """Generation paused and the prefix cache flushed around SGLang's begin/end of a weight update."""
    pause_generation(urls)
    try:
        flush_cache(urls)
        on_all(urls, "/begin_weight_update", {})
        yield
        on_all(urls, "/end_weight_update", {})
    finally:
        continue_generation(urls)


def buckets(named_tensors: Iterable[tuple[str, torch.Tensor]], max_bytes: int) -> Iterator[list]:
    """Group tensors in order into lists of at most ``max_bytes`` (a larger tensor travels alone)."""
    bucket: list[tuple[str, torch.Tensor]] = []
    size = 0
    for name, tensor in named_tensors:
        nbytes = tensor.numel() * tensor.element_size()
        if bucket and size + nbytes > max_bytes:
            yield bucket
            bucket, size = [], 0
        bucket.append((name, tensor))
        size += nbytes
    if bucket:
        yield bucket


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _sender_group(backend: str, address: str, port: int, world_size: int, group_name: str, timeout: float):
    """Rank 0 of a process group that is not the default one (a trainer already has its own default group).

    Built like SGLang's receiving side (a TCP rendezvous, a store prefixed with the group name), so both meet.
    """
    from torch.distributed.distributed_c10d import Backend, PrefixStore, _new_process_group_helper, _world, rendezvous

    delta = datetime.timedelta(seconds=timeout)
    store, _, _ = next(rendezvous(f"tcp://{address}:{port}", 0, world_size, timeout=delta))
    store.set_timeout(delta)
    group, _ = _new_process_group_helper(
        world_size, 0, [], Backend(backend), PrefixStore(group_name, store), group_name=group_name, timeout=delta
    )
    _world.pg_group_ranks[group] = {i: i for i in range(world_size)}  # destroy_process_group looks it up
    return group


class DistributedWeightSender:
    """The trainer's end of a weight-update group: rank 0 broadcasts, every engine TP rank receives.

    ``backend`` is ``nccl`` on GPU and ``gloo`` on CPU. SGLang 0.5.23 only accepts distributed updates between
    ``/begin_weight_update`` and ``/end_weight_update`` (measured: 400 otherwise; the same holds for tensors).
    """

    def __init__(
        self,
        engine_urls: list[str],
        tp_sizes: list[int] | None = None,
        master_address: str = "127.0.0.1",
        master_port: int | None = None,
        backend: str = "gloo",
        group_name: str = "slime_weight_update",
        timeout: float = CONTROL_TIMEOUT,
    ) -> None:
        from slime_sglang.processes import free_port

        self.engine_urls = list(engine_urls)
        self.tp_sizes = tp_sizes or [1] * len(engine_urls)
        self.master_address = master_address
        self.master_port = master_port or free_port(master_address)
        self.backend = backend
        self.group_name = group_name
        self.timeout = timeout
        self.group = None
        import torch

        self.device = torch.device("cuda" if backend == "nccl" else "cpu")

    def connect(self) -> None:
        """Create the group: each engine joins (over HTTP) while this process joins as rank 0."""
        world_size = 1 + sum(self.tp_sizes)
        offsets = [1 + sum(self.tp_sizes[:i]) for i in range(len(self.engine_urls))]
        joins = {
            url: {
                "master_address": self.master_address,
                "master_port": self.master_port,
                "rank_offset": offset,
                "world_size": world_size,
                "group_name": self.group_name,
                "backend": self.backend,
            }
            for url, offset in zip(self.engine_urls, offsets, strict=True)
        }
        with posting_to_each("/init_weights_update_group", joins):
            self.group = _sender_group(
                self.backend, self.master_address, self.master_port, world_size, self.group_name, self.timeout
            )

    def update(self, named_tensors: Iterable[tuple[str, torch.Tensor]], version: str, buffer_size: int) -> None:
        """Broadcast HF-named tensors in buckets of ``buffer_size`` bytes; engines load them as they arrive."""
        if self.group is None:
            raise SGLangError("DistributedWeightSender.update called before connect()")
        with weight_update_session(self.engine_urls):
            for bucket in buckets(named_tensors, buffer_size):
                self._send_bucket(bucket, version)

    def _send_bucket(self, bucket: list[tuple[str, torch.Tensor]], version: str) -> None:
        payload = {
            "names": [name for name, _ in bucket],
            "dtypes": [_dtype_name(t.dtype) for _, t in bucket],
            "shapes": [list(t.shape) for _, t in bucket],
            "group_name": self.group_name,
            "flush_cache": False,
            "weight_version": version,
        }
        # Engines block in their receive until the broadcasts below arrive, so the requests run alongside.
        with posting_to_each("/update_weights_from_distributed", dict.fromkeys(self.engine_urls, payload)):
            for _, tensor in bucket:
                self.group.broadcast(tensor.detach().to(self.device).contiguous(), 0).wait()

    def close(self) -> None:
        """Leave the group on both ends (engines that died meanwhile are skipped)."""
        if self.group is None:
            return
        for url in self.engine_urls:
            try:
                post(url, "/destroy_weights_update_group", {"group_name": self.group_name}, timeout=60)
            except SGLangError:
                pass
        import torch.distributed

        torch.distributed.destroy_process_group(self.group)
        self.group = None


def _pickled(named_tensors: list[tuple[str, torch.Tensor]]) -> str:
    """``named_tensors`` as SGLang's ``/update_weights_from_tensor`` takes them: shared-memory tensors by reference."""
    from multiprocessing.reduction import ForkingPickler

    pickled = io.BytesIO()
    ForkingPickler(pickled).dump(named_tensors)
    return base64.b64encode(pickled.getvalue()).decode()


def _tensor_loads(
    urls: list[str], tp_sizes: list[int], named_tensors: list[tuple[str, torch.Tensor]], version: str
) -> dict[str, dict]:
    """Each engine's ``/update_weights_from_tensor`` request. One pickle per receiving rank: torch counts references
    to shared memory per pickle (up per tensor pickled, down per tensor unpickled), so two ranks reading one pickle
    would free the memory under the sender (measured: the next bucket's open failed)."""
    return {
        url: {
            "serialized_named_tensors": [_pickled(named_tensors) for _ in range(tp)],
            "flush_cache": False,
            "weight_version": version,
        }
        for url, tp in zip(urls, tp_sizes, strict=True)
    }


class SharedMemoryWeightSender:
    """The trainer's end for engines on its own host: buckets go through one shared-memory buffer.

    Each bucket is copied into the buffer and engines read it in place (SGLang's ``/update_weights_from_tensor``
    with tensors that ``torch.multiprocessing`` passes by file name), so the bytes move by memcpy: gloo has no
    shared-memory transport and goes through TCP on loopback, 6-9x the memcpy floor by itself (docs/benchmarks.md).
    It needs the ``file_system`` sharing strategy: with the default one the CPU scheduler fails with an
    AuthenticationError (measured).

    The buffer is kept from one update to the next, as allocating and first touching shared memory costs more than
    the copy. ``close()`` frees it through torch (the engines changed; the process goes on); a process that is
    ending calls ``release_at_exit()`` (the train actor, through ``SGLangWeightReceiver.close``, before it exits;
    an exit handler otherwise), which never calls into torch's shared-memory manager. When the process is killed
    before either ran, ``slime_sglang.shm_watch`` removes the buffer (``torch_<pid>_*``) after it.
    """

    ALIGNMENT = 64  # bytes; every tensor starts at a multiple of it in the buffer

    def __init__(self, engine_urls: list[str], tp_sizes: list[int] | None = None) -> None:
        import torch.multiprocessing

        self.engine_urls = list(engine_urls)
        self.tp_sizes = tp_sizes or [1] * len(engine_urls)
        self.buffer: torch.Tensor | None = None
        torch.multiprocessing.set_sharing_strategy("file_system")
        atexit.register(self.release_at_exit)
        remove_torch_shm_after_exit()  # a kill runs neither close() nor the exit handler

    def update(self, named_tensors: Iterable[tuple[str, torch.Tensor]], version: str, buffer_size: int) -> None:
        """Send HF-named tensors in buckets of ``buffer_size`` bytes; engines load each bucket before the next."""
        with weight_update_session(self.engine_urls):
            for bucket in buckets(named_tensors, buffer_size):
                self._send_bucket(bucket, version)

    def close(self) -> None:
        """Free the shared memory (once no engine holds a mapping of it, torch removes it from /dev/shm)."""
        self.buffer = None
        atexit.unregister(self.release_at_exit)

    def release_at_exit(self) -> None:
        """Remove the buffer from /dev/shm in a process that is ending, without calling into torch.

        Torch frees shared memory through its shared-memory manager, a child process (``torch_shm_manager``). An
        exiting Ray actor has its child processes killed before Python's exit handlers run, so torch's free in an
        exit handler, or in the interpreter's teardown, wrote to a dead socket and aborted the actor (measured:
        Broken pipe, then SIGABRT in ``THManagedMapAllocator::close``). Here the name goes and the mapping is
        kept to the end of the process: nothing opens the name again, an engine still mapping the buffer keeps its
        pages, and as this process's reference is never dropped no process removes the name a second time (torch
        fails when that finds it gone).
        """
        atexit.unregister(self.release_at_exit)
        if self.buffer is None:
            return
        import ctypes
        from _posixshmem import shm_unlink  # CPython's shm_unlink, as multiprocessing.shared_memory uses it

        name = self.buffer.untyped_storage()._share_filename_cpu_()[1].decode()
        try:
            shm_unlink(name)
        except FileNotFoundError:
            pass
        ctypes.pythonapi.Py_IncRef(ctypes.py_object(self.buffer))  # never deallocated: torch's free never runs
        self.buffer = None

    def _send_bucket(self, bucket: list[tuple[str, torch.Tensor]], version: str) -> None:
        views = self._copy_into_buffer(bucket)
        on_each("/update_weights_from_tensor", _tensor_loads(self.engine_urls, self.tp_sizes, views, version))

    def _copy_into_buffer(self, bucket: list[tuple[str, torch.Tensor]]) -> list[tuple[str, torch.Tensor]]:
        import torch

        nbytes = [tensor.numel() * tensor.element_size() for _, tensor in bucket]
        spans = [-(-n // self.ALIGNMENT) * self.ALIGNMENT for n in nbytes]
        if self.buffer is None or self.buffer.numel() < sum(spans):
            self.buffer = None  # the old buffer's shared memory goes before the new one is allocated
            self.buffer = torch.empty(sum(spans), dtype=torch.uint8).share_memory_()
        views, offset = [], 0
        for (name, tensor), n, span in zip(bucket, nbytes, spans, strict=True):
            view = self.buffer[offset : offset + n].view(tensor.dtype).view(tensor.shape)
            view.copy_(tensor.detach())
            views.append((name, view))
            offset += span
        return views


class CudaIpcWeightSender:
    """The trainer's end for GPU engines that share its GPU (``--colocate``): NCCL cannot join two ranks on one GPU,
    so each bucket's device tensors go to SGLang's ``/update_weights_from_tensor`` as CUDA IPC handles and the engine
    copies from the trainer's memory, one pickle per tensor-parallel rank (as ``SharedMemoryWeightSender``). SGLang's
    reduction patch names the device by UUID, so an engine that numbers its visible GPUs otherwise opens the right
    one. Needs a GPU: not run on the project's machines yet (bench/gpu/colocate_check.py is the prepared check)."""

    def __init__(self, engine_urls: list[str], tp_sizes: list[int]) -> None:
        from sglang.srt.utils.patch_torch import monkey_patch_torch_reductions

        monkey_patch_torch_reductions()
        self.engine_urls = list(engine_urls)
        self.tp_sizes = list(tp_sizes)

    def update(self, named_tensors: Iterable[tuple[str, torch.Tensor]], version: str, buffer_size: int) -> None:
        import torch

        with weight_update_session(self.engine_urls):
            for bucket in buckets(named_tensors, buffer_size):
                on_device = [(name, tensor.detach().to("cuda").contiguous()) for name, tensor in bucket]
                torch.cuda.current_stream().synchronize()  # the engine reads the memory from its own stream
                loads = _tensor_loads(self.engine_urls, self.tp_sizes, on_device, version)
                on_each("/update_weights_from_tensor", loads)  # returns once the engines copied the bucket
        torch.cuda.ipc_collect()  # free the buckets' memory the engines have let go of

    def close(self) -> None:
        """Nothing is held between updates."""


def choose_transports(
    engine_nodes: list[str | None],
    engine_gpus: list[list[str]],
    shared_memory: bool,
    node: str | None,
    gpus: list[str],
) -> dict[str, list[int]]:
    """The engines (by index) each transport serves, from a sender on Ray node ``node`` holding GPU ids ``gpus``.

    Engines on the sender's node: through shared memory when they are CPU engines (``shared_memory``), through CUDA
    IPC when they hold the sender's GPU (``--colocate``). Every other engine (another GPU or node, or unknown: an
    external engine) through a broadcast group.
    """
    chosen: dict[str, list[int]] = {}
    for index, (engine_node, engine_gpu_ids) in enumerate(zip(engine_nodes, engine_gpus, strict=True)):
        here = node is not None and engine_node == node
        if here and shared_memory:
            kind = "shared_memory"
        elif here and set(gpus) & set(engine_gpu_ids):
            kind = "cuda_ipc"
        else:
            kind = "broadcast"
        chosen.setdefault(kind, []).append(index)
    return chosen


class SGLangWeightReceiver:
    """slime's ``WeightReceiver`` for SGLang engines: made by the engine, used in the trainer's sender process.

    It holds only addresses, so it pickles (Ray hands the trainer a fresh copy on every call). The transport is
    chosen per engine where the sender runs, by Ray node id and GPU id (``choose_transports``): shared memory for CPU
    engines on the sender's node, CUDA IPC for GPU engines on the sender's GPU, a broadcast group (gloo on CPU, nccl
    on GPU) for the others. Each sender is kept for the process's later updates to the same engines, and replaced
    when they change (a restarted engine has a new address).
    """

    def __init__(
        self,
        engine_urls: list[str],
        tp_sizes: list[int],
        engine_nodes: list[str | None],
        backend: str,
        buffer_size: int,
        shared_memory: bool = False,
        engine_gpus: list[list[str]] | None = None,
    ) -> None:
        self.engine_urls = list(engine_urls)
        self.tp_sizes = list(tp_sizes)
        self.engine_nodes = list(engine_nodes)  # the Ray node of each engine; None when unknown (external engines)
        self.engine_gpus = engine_gpus or [[] for _ in engine_urls]  # the GPU ids on its node of each; [] on CPU
        self.backend = backend
        self.buffer_size = buffer_size
        self.shared_memory = shared_memory

    def transports(self) -> dict[str, list[int]]:
        """The engines (by index) each transport serves, as seen from this process's node and GPU."""
        return choose_transports(self.engine_nodes, self.engine_gpus, self.shared_memory, _this_node(), _this_gpus())

    def update_weights(self, named_tensors: Iterable[tuple[str, torch.Tensor]], weight_version: str) -> None:
        transports = self.transports()
        if len(transports) > 1:  # both transports read the tensors
            named_tensors = list(named_tensors)
        for kind in [kind for kind in _senders if kind not in transports]:
            _senders.pop(kind).close()
        for kind, engines in transports.items():
            urls = [self.engine_urls[i] for i in engines]
            sender = _senders.get(kind)
            if sender is None or sender.engine_urls != urls:
                if sender is not None:  # the engines changed (a restarted one has a new address): start over
                    sender.close()
                sender = _senders[kind] = self._new_sender(kind, engines)
            sender.update(named_tensors, weight_version, self.buffer_size)

    def close(self) -> None:
        """The trainer's process is about to end (``TrainActor.close``): release the shared-memory buffer now, as its
        exit handlers may not run (``slime.loop.end_actors`` kills what is left once the exit call returns). A
        broadcast group ends with the process."""
        sender = _senders.pop("shared_memory", None)
        if sender is not None:
            sender.release_at_exit()

    def _new_sender(self, kind: str, engines: list[int]) -> WeightSender:
        urls = [self.engine_urls[i] for i in engines]
        tp_sizes = [self.tp_sizes[i] for i in engines]
        if kind == "shared_memory":
            logger.info("weight updates go to %d engines on this node through shared memory", len(urls))
            return SharedMemoryWeightSender(urls, tp_sizes)
        if kind == "cuda_ipc":
            logger.info("weight updates go to %d engines on this GPU through CUDA IPC", len(urls))
            return CudaIpcWeightSender(urls, tp_sizes)
        # The engines join the group at this process's address: loopback unless one runs on another node.
        node = _this_node()
        elsewhere = any(self.engine_nodes[i] is None or self.engine_nodes[i] != node for i in engines)
        address = _node_ip() if elsewhere and node else "127.0.0.1"
        logger.info("weight updates go to %d engines over a %s broadcast group at %s", len(urls), self.backend, address)
        sender = DistributedWeightSender(urls, tp_sizes, address, backend=self.backend)
        sender.connect()
        return sender


def _this_node() -> str | None:
    """This process's Ray node id; None outside Ray."""
    import ray

    return ray.get_runtime_context().get_node_id() if ray.is_initialized() else None


def _this_gpus() -> list[str]:
    """The GPU ids Ray gave this process; none outside Ray or on CPU."""
    import ray

    return [str(gpu) for gpu in ray.get_gpu_ids()] if ray.is_initialized() else []


def _node_ip() -> str:
    import ray

    return ray.util.get_node_ip_address()


WeightSender = SharedMemoryWeightSender | CudaIpcWeightSender | DistributedWeightSender

# This process's senders, by transport: a broadcast group can be joined once (engines leave the old one before a new
# one is made), and the shared-memory buffer is kept from one update to the next.
_senders: dict[str, WeightSender] = {}
