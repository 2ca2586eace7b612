"""Weight sync into a running SGLang CPU engine, against the memcpy floor of the model's bytes (goal: <= 3x).

For each model size it starts one SGLang CPU server, then alternates, repeat after repeat:

* ``shared memory``: ``SharedMemoryWeightSender.update`` (pause, flush cache, begin, each bucket copied into a
  shared-memory buffer that the engine loads from, end, continue), the path a run takes with the default
  ``--update-weight-transport distributed`` when the engines run on CPU on the trainer's host; phases timed;
* ``gloo``: ``DistributedWeightSender.update`` (the same steps with one gloo broadcast per tensor), the path for
  engines on other hosts; phases timed;
* ``disk``: ``slime.weights.disk.write_hf_checkpoint`` then ``update_weights_from_disk`` (the disk receiver's path);
* ``memcpy``: ``torch`` copies of the same tensors into preallocated buffers (the floor: every byte moved once;
  the fastest of 5 passes);
* ``bare gloo``: the transport alone: the same tensors broadcast one by one over a bare gloo group to a second
  process that receives into preallocated buffers (no SGLang, no HTTP). The gloo path cannot beat it, so
  gloo / bare gloo is what slime and SGLang add on top of the transport.

    python bench/weight_sync.py [--sizes 1M 30M 250M] [--repeats 5]
"""

import argparse
import tempfile
import time
from pathlib import Path

from common import emit_row, load_average, median, set_bench_env, spread, this_command, verdict

# name -> (hidden size, layers) of build_tiny_model's Qwen2 layout; the parameter count printed is the real one.
SIZES = {"1M": (128, 4), "10M": (256, 10), "30M": (512, 8), "250M": (1024, 16)}


def build(workdir: Path, size: str) -> Path:
    from slime_testkit.tiny_model import build_tiny_model

    hidden, layers = SIZES[size]
    return build_tiny_model(workdir / size, hidden_size=hidden, num_layers=layers, num_heads=4, num_kv_heads=2)


def timed_update(sender, tensors: dict, version: str, bucket_bytes: int) -> dict[str, float]:
    """``sender.update`` (either sender), with each of its steps timed."""
    from slime_sglang import weight_updates

    urls = sender.engine_urls
    times = {}
    start = time.perf_counter()
    weight_updates.pause_generation(urls)
    times["pause"] = time.perf_counter() - start
    weight_updates.flush_cache(urls)
    times["flush"] = time.perf_counter() - start - sum(times.values())
    weight_updates.on_all(urls, "/begin_weight_update", {})
    times["begin"] = time.perf_counter() - start - sum(times.values())
    for bucket in weight_updates.buckets(tensors.items(), bucket_bytes):
        sender._send_bucket(bucket, version)
    times["send"] = time.perf_counter() - start - sum(times.values())
    weight_updates.on_all(urls, "/end_weight_update", {})
    times["end"] = time.perf_counter() - start - sum(times.values())
    weight_updates.continue_generation(urls)
    times["continue"] = time.perf_counter() - start - sum(times.values())
    times["total"] = time.perf_counter() - start
    return times


def memcpy_floor(tensors: dict, buffers: dict, copies: int = 5) -> float:
    """The fastest of ``copies`` passes copying every tensor into its preallocated buffer (a loaded machine
    preempts single passes; the floor is what the hardware can do)."""
    best = float("inf")
    for _ in range(copies):
        start = time.perf_counter()
        for name, tensor in tensors.items():
            buffers[name].copy_(tensor)
        best = min(best, time.perf_counter() - start)
    return best


def _receive_broadcasts(port: int, specs: list[tuple[list[int], str]], rounds: int) -> None:
    """The ``gloo`` floor's receiving process: ``rounds`` times, every tensor of ``specs`` in order."""
    import torch
    import torch.distributed as dist

    store = dist.TCPStore("127.0.0.1", port, 2, is_master=False)
    group = dist.ProcessGroupGloo(store, 1, 2)
    buffers = [torch.empty(shape, dtype=getattr(torch, dtype)) for shape, dtype in specs]
    for _ in range(rounds):
        for buffer in buffers:
            group.broadcast(buffer, 0).wait()


class GlooFloor:
    """Rank 0 of a bare two-process gloo group whose other rank receives ``tensors`` (see ``_receive_broadcasts``)."""

    def __init__(self, tensors: dict, rounds: int) -> None:
        import multiprocessing

        import torch.distributed as dist

        from slime_sglang.processes import free_port

        port = free_port()
        specs = [(list(t.shape), str(t.dtype).removeprefix("torch.")) for t in tensors.values()]
        self.receiver = multiprocessing.get_context("spawn").Process(
            target=_receive_broadcasts, args=(port, specs, rounds)
        )
        self.receiver.start()
        self.group = dist.ProcessGroupGloo(dist.TCPStore("127.0.0.1", port, 2, is_master=True), 0, 2)
        self.tensors = list(tensors.values())

    def broadcast(self) -> float:
        start = time.perf_counter()
        for tensor in self.tensors:
            self.group.broadcast(tensor, 0).wait()
        return time.perf_counter() - start

    def close(self) -> None:
        self.receiver.join(timeout=60)


def bench_size(workdir: Path, size: str, repeats: int, bucket_bytes: int) -> None:
    import torch
    from safetensors.torch import load_file
    from sglang_server import start_server

    from slime.weights.disk import write_hf_checkpoint
    from slime_sglang import weight_updates
    from slime_sglang.weight_updates import DistributedWeightSender, SharedMemoryWeightSender

    model_dir = build(workdir, size)
    tensors = load_file(model_dir / "model.safetensors")
    nbytes = sum(t.numel() * t.element_size() for t in tensors.values())
    params = sum(t.numel() for t in tensors.values())
    server = start_server(model_dir)
    try:
        senders = {
            "shared memory": SharedMemoryWeightSender([server.url]),
            "gloo": DistributedWeightSender([server.url], backend="gloo"),
        }
        senders["gloo"].connect()
        buffers = {name: torch.empty_like(t) for name, t in tensors.items()}
        bare_gloo = GlooFloor(tensors, rounds=repeats + 1)
        results: dict[str, list[float]] = {p: [] for p in ("shared memory", "gloo", "disk", "memcpy", "bare gloo")}
        phases: dict[str, list[dict[str, float]]] = {"shared memory": [], "gloo": []}
        loads = []
        for path, sender in senders.items():  # the first update allocates buffers (gloo's, the shared memory)
            timed_update(sender, tensors, f"warmup-{path}", bucket_bytes)
        bare_gloo.broadcast()
        for repeat in range(repeats):
            loads.append(load_average())
            order = list(results)
            if repeat % 2:
                order.reverse()
            for path in order:
                start = time.perf_counter()
                if path in senders:
                    phases[path].append(timed_update(senders[path], tensors, f"{path}{repeat}", bucket_bytes))
                elif path == "disk":
                    target = write_hf_checkpoint(tensors, model_dir, workdir / f"{size}-disk" / f"v{repeat}")
                    weight_updates.update_weights_from_disk([server.url], str(target), f"disk{repeat}")
                elif path == "bare gloo":
                    results[path].append(bare_gloo.broadcast())
                    continue
                else:
                    results[path].append(memcpy_floor(tensors, buffers))
                    continue
                results[path].append(time.perf_counter() - start)
        bare_gloo.close()
        senders["gloo"].close()
    finally:
        server.shutdown()

    print(f"{size}: {params / 1e6:.2f}M parameters, {nbytes / 1e6:.1f} MB fp32; load {min(loads)}-{max(loads)}")
    for path, timings in phases.items():
        print(f"  {path} phases (median s): { {k: round(median([t[k] for t in timings]), 4) for k in timings[0]} }")
    for path, values in results.items():
        print(f"  {path:14}: {spread(values)} s")
    floor = results["memcpy"]
    for path in ("shared memory", "gloo", "disk"):
        ratios = [a / b for a, b in zip(results[path], floor, strict=True)]
        over_gloo = [a / b for a, b in zip(results[path], results["bare gloo"], strict=True)]
        emit_row(
            f"weight sync, {path} path, {size} model ({nbytes / 1e6:.1f} MB fp32), "
            f"{bucket_bytes // 1024**2} MiB buckets, one SGLang CPU engine",
            f"{spread(results[path])} s per update; memcpy floor {spread(floor)} s; bare gloo broadcast "
            f"{spread(results['bare gloo'])} s",
            f"{spread(ratios)}x the memcpy floor; {spread(over_gloo)}x a bare gloo broadcast",
            verdict("<= 3x", ratios, lambda r: r <= 3),
            this_command(),
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["1M", "30M", "250M"], choices=list(SIZES))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--update-weight-buffer-size", type=int, default=512 * 1024**2, help="bytes per bucket")
    options = parser.parse_args()
    set_bench_env()
    workdir = Path(tempfile.mkdtemp(prefix="slime-bench-weights-"))
    for size in options.sizes:
        bench_size(workdir, size, options.repeats, options.update_weight_buffer_size)


if __name__ == "__main__":
    main()
