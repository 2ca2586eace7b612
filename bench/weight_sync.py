"""Weight sync into a running SGLang CPU engine, against the memcpy floor of the model's bytes (goal: <= 3x).

For each model size it starts one SGLang CPU server, then alternates, repeat after repeat:

* ``distributed``: ``DistributedWeightSender.update`` (pause, flush cache, begin, one gloo broadcast per tensor,
  end, continue), the path a run takes with ``--rollout-backend sglang``; its phases are timed too;
* ``disk``: ``slime.weights.write_hf_checkpoint`` then ``update_weights_from_disk`` (the disk receiver's path);
* ``memcpy``: ``torch`` copies of the same tensors into preallocated buffers (the floor: every byte moved once;
  the fastest of 5 passes);
* ``gloo``: the transport alone: the same tensors broadcast one by one over a bare gloo group to a second process
  that receives into preallocated buffers (no SGLang, no HTTP). The distributed path cannot beat it, so
  distributed / gloo is what slime and SGLang add on top of the transport.

    python bench/weight_sync.py [--sizes 1M 30M] [--repeats 5]
"""

import argparse
import tempfile
import time
from pathlib import Path

from common import emit_row, load_average, median, set_bench_env, spread, this_command, verdict

# name -> (hidden size, layers) of build_tiny_model's Qwen2 layout; the parameter count printed is the real one.
SIZES = {"1M": (128, 4), "10M": (256, 10), "30M": (512, 8)}


def build(workdir: Path, size: str) -> Path:
    from slime.testing.tiny_model import build_tiny_model

    hidden, layers = SIZES[size]
    return build_tiny_model(workdir / size, hidden_size=hidden, num_layers=layers, num_heads=4, num_kv_heads=2)


def timed_distributed_update(sender, tensors: dict, version: str) -> dict[str, float]:
    """``DistributedWeightSender.update``, with each of its steps timed."""
    from slime_sglang import weights

    urls = sender.engine_urls
    times = {}
    start = time.perf_counter()
    weights.pause_generation(urls)
    times["pause"] = time.perf_counter() - start
    weights.flush_cache(urls)
    times["flush"] = time.perf_counter() - start - sum(times.values())
    weights.on_all(urls, "/begin_weight_update", {})
    times["begin"] = time.perf_counter() - start - sum(times.values())
    for bucket in weights.buckets(tensors.items(), 512 * 1024**2):
        sender._send_bucket(bucket, version)
    times["broadcast"] = time.perf_counter() - start - sum(times.values())
    weights.on_all(urls, "/end_weight_update", {})
    times["end"] = time.perf_counter() - start - sum(times.values())
    weights.continue_generation(urls)
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


def bench_size(workdir: Path, size: str, repeats: int) -> None:
    import torch
    from safetensors.torch import load_file
    from sglang_server import start_server

    from slime.weights import write_hf_checkpoint
    from slime_sglang import weights
    from slime_sglang.weights import DistributedWeightSender

    model_dir = build(workdir, size)
    tensors = load_file(model_dir / "model.safetensors")
    nbytes = sum(t.numel() * t.element_size() for t in tensors.values())
    params = sum(t.numel() for t in tensors.values())
    server = start_server(model_dir)
    try:
        sender = DistributedWeightSender([server.url], backend="gloo")
        sender.connect()
        buffers = {name: torch.empty_like(t) for name, t in tensors.items()}
        gloo = GlooFloor(tensors, rounds=repeats + 1)
        results: dict[str, list[float]] = {"distributed": [], "disk": [], "memcpy": [], "gloo": []}
        phases: list[dict[str, float]] = []
        loads = []
        timed_distributed_update(sender, tensors, "warmup")  # the first broadcast sets up gloo buffers
        gloo.broadcast()
        for repeat in range(repeats):
            loads.append(load_average())
            order = ["distributed", "disk", "memcpy", "gloo"]
            if repeat % 2:
                order.reverse()
            for path in order:
                start = time.perf_counter()
                if path == "distributed":
                    phases.append(timed_distributed_update(sender, tensors, f"d{repeat}"))
                elif path == "disk":
                    target = write_hf_checkpoint(tensors, model_dir, workdir / f"{size}-disk" / f"v{repeat}")
                    weights.update_weights_from_disk([server.url], str(target), f"disk{repeat}")
                elif path == "gloo":
                    results[path].append(gloo.broadcast())
                    continue
                else:
                    results[path].append(memcpy_floor(tensors, buffers))
                    continue
                results[path].append(time.perf_counter() - start)
        gloo.close()
        sender.close()
    finally:
        server.shutdown()

    phase_summary = {k: round(median([p[k] for p in phases]), 4) for k in phases[0]}
    print(f"{size}: {params / 1e6:.2f}M parameters, {nbytes / 1e6:.1f} MB fp32; load {min(loads)}-{max(loads)}")
    print(f"  distributed phases (median s): {phase_summary}")
    for path, values in results.items():
        print(f"  {path:12}: {spread(values)} s")
    floor = results["memcpy"]
    for path in ("distributed", "disk"):
        ratios = [a / b for a, b in zip(results[path], floor, strict=True)]
        over_gloo = [a / b for a, b in zip(results[path], results["gloo"], strict=True)]
        emit_row(
            f"weight sync, {path} path, {size} model ({nbytes / 1e6:.1f} MB fp32), one SGLang CPU engine",
            f"{spread(results[path])} s per update; memcpy floor {spread(floor)} s; bare gloo broadcast "
            f"{spread(results['gloo'])} s",
            f"{spread(ratios)}x the memcpy floor; {spread(over_gloo)}x a bare gloo broadcast",
            verdict("<= 3x", ratios, lambda r: r <= 3),
            this_command(),
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["1M", "30M"], choices=list(SIZES))
    parser.add_argument("--repeats", type=int, default=5)
    options = parser.parse_args()
    set_bench_env()
    workdir = Path(tempfile.mkdtemp(prefix="slime-bench-weights-"))
    for size in options.sizes:
        bench_size(workdir, size, options.repeats)


if __name__ == "__main__":
    main()
