"""Weight updates into running SGLang engines: from disk, over a torch.distributed group, from tensors.

Every update pauses generation (in-flight requests are retracted and resume on the new weights), flushes the prefix
cache (its KV entries were computed with the old weights), loads, then continues generation.
"""

from __future__ import annotations

import base64
import datetime
import io
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import httpx

from slime_sglang.control_http import control_client
from slime_sglang.errors import SGLangError

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
    with ThreadPoolExecutor(max(1, len(urls))) as pool:
        list(pool.map(lambda url: post(url, path, payload), urls))


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
        with ThreadPoolExecutor(len(self.engine_urls)) as pool:
            joins = [
                pool.submit(
                    post,
                    url,
                    "/init_weights_update_group",
                    {
                        "master_address": self.master_address,
                        "master_port": self.master_port,
                        "rank_offset": offset,
                        "world_size": world_size,
                        "group_name": self.group_name,
                        "backend": self.backend,
                    },
                )
                for url, offset in zip(self.engine_urls, offsets, strict=True)
            ]
            self.group = _sender_group(
                self.backend, self.master_address, self.master_port, world_size, self.group_name, self.timeout
            )
            for join in joins:
                join.result()

    def update(self, named_tensors: Iterable[tuple[str, torch.Tensor]], version: str, buffer_size: int) -> None:
        """Broadcast HF-named tensors in buckets of ``buffer_size`` bytes; engines load them as they arrive."""
        if self.group is None:
            raise SGLangError("DistributedWeightSender.update called before connect()")
        pause_generation(self.engine_urls)
        try:
            flush_cache(self.engine_urls)
            on_all(self.engine_urls, "/begin_weight_update", {})
            for bucket in buckets(named_tensors, buffer_size):
                self._send_bucket(bucket, version)
            on_all(self.engine_urls, "/end_weight_update", {})
        finally:
            continue_generation(self.engine_urls)

    def _send_bucket(self, bucket: list[tuple[str, torch.Tensor]], version: str) -> None:
        payload = {
            "names": [name for name, _ in bucket],
            "dtypes": [_dtype_name(t.dtype) for _, t in bucket],
            "shapes": [list(t.shape) for _, t in bucket],
            "group_name": self.group_name,
            "flush_cache": False,
            "weight_version": version,
        }
        with ThreadPoolExecutor(len(self.engine_urls)) as pool:
            # Engines block in their receive until the broadcasts below arrive, so the requests run alongside.
            requests = [pool.submit(post, url, "/update_weights_from_distributed", payload) for url in self.engine_urls]
            for _, tensor in bucket:
                self.group.broadcast(tensor.detach().to(self.device).contiguous(), 0).wait()
            for request in requests:
                request.result()

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


def update_weights_from_tensors(
    urls: list[str],
    named_tensors: Iterable[tuple[str, torch.Tensor]],
    version: str,
    buffer_size: int,
    tp_size: int = 1,
) -> None:
    """Colocated engines: pass tensors through shared memory (``torch.multiprocessing``), in buckets.

    The sender needs the ``file_system`` sharing strategy: with the default one the CPU scheduler crashes with an
    AuthenticationError (measured). SGLang reads entry ``tp_rank`` of the list, so each rank gets the same copy.
    """
    from multiprocessing.reduction import ForkingPickler

    import torch.multiprocessing as torch_mp

    torch_mp.set_sharing_strategy("file_system")
    pause_generation(urls)
    try:
        flush_cache(urls)
        on_all(urls, "/begin_weight_update", {})
        for bucket in buckets(named_tensors, buffer_size):
            buffer = io.BytesIO()
            ForkingPickler(buffer).dump([(name, t.detach().cpu().contiguous()) for name, t in bucket])
            serialized = base64.b64encode(buffer.getvalue()).decode()
            on_all(
                urls,
                "/update_weights_from_tensor",
                {"serialized_named_tensors": [serialized] * tp_size, "flush_cache": False, "weight_version": version},
            )
        on_all(urls, "/end_weight_update", {})
    finally:
        continue_generation(urls)


class SGLangWeightReceiver:
    """slime's ``WeightReceiver`` for SGLang engines: made by the engine, used in the trainer's sender process.

    It holds only addresses, so it pickles (Ray hands the trainer a fresh copy on every call). The broadcast group
    is created on the first update, in the process that sends, and kept for the process's later updates.
    """

    def __init__(self, engine_urls: list[str], tp_sizes: list[int], backend: str, buffer_size: int) -> None:
        self.engine_urls = list(engine_urls)
        self.tp_sizes = list(tp_sizes)
        self.backend = backend
        self.buffer_size = buffer_size

    def update_weights(self, named_tensors: Iterable[tuple[str, torch.Tensor]], weight_version: str) -> None:
        key = tuple(self.engine_urls)
        if key not in _SENDERS:
            sender = DistributedWeightSender(self.engine_urls, self.tp_sizes, backend=self.backend)
            sender.connect()
            _SENDERS[key] = sender
        _SENDERS[key].update(named_tensors, weight_version, self.buffer_size)


# The connected sender of each engine set, per process: a group can be joined once, and engines join it once.
_SENDERS: dict[tuple[str, ...], DistributedWeightSender] = {}
