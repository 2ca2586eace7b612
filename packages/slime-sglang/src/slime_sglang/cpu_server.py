"""An SGLang server in CPU mode: ``python -m slime_sglang.cpu_server <sglang server args>``.

SGLang's deterministic inference (``--enable-deterministic-inference``: per-request ``sampling_seed``) is wired
for GPU attention kernels only: it refuses the CPU attention backend and turns on CUDA-only batch-invariant
kernels. On CPU, ``torch_native`` attention computes each request on its own, so seeded sampling draws the same
tokens whatever else is in the batch; this entry lets the flag through with it and skips the CUDA kernels.

SGLang's CPU ``empty_cache`` (there is no CPU allocator cache to empty) is a full ``gc.collect()`` in the
scheduler, run on every ``/flush_cache``, so on every weight update: 0.6 s each with a 1M-parameter model
(measured; the whole update took 0.65 s, the broadcast 0.03 s). Python's own collector still runs; this entry
makes it a no-op.

A paused SGLang scheduler (``/pause_generation``, so during every weight update) spins in its event loop; it now
waits on its sockets as an idle one does with ``--sleep-on-idle``. On 2 cores the spinning scheduler took a core
from the process sending the weights, whose copies then ran up to 30x slower (measured).

Attention runs batched (``slime_sglang.cpu_attention``) instead of in SGLang's Python loop over requests.

The server (with its scheduler and detokenizer) ends when its parent dies (``slime_sglang.parent_watch``). A taken
HTTP port ends it before the model loads.

Host buffers (the routed-experts capturer's, ``--enable-return-routed-experts``) are pinned with cudaHostRegister,
which needs a CUDA driver; on CPU they are plain memory.

SGLang starts its scheduler and detokenizer with multiprocessing's spawn (a CUDA process cannot fork), so each
re-imported SGLang: about half of a 47-s start on 2 cores (bench/server_start.py). A CPU server forks them: they
inherit the imports and the patches below, which run at import.
"""

import errno
import multiprocessing
import os
import socket
import sys

from sglang.srt import server_args
from sglang.srt.entrypoints import engine
from sglang.srt.layers.attention.attention_registry import ATTENTION_BACKENDS
from sglang.srt.managers.scheduler import Scheduler
from sglang.srt.mem_cache.pool_host.common import ALLOC_MEMORY_FUNCS
from sglang.srt.model_executor.model_runner import ModelRunner
from sglang.srt.platforms.cpu import CpuDeviceMixin

from slime_sglang.cpu_attention import BatchedAttnBackend
from slime_sglang.parent_watch import exit_with_parent

if "torch_native" not in server_args.DETERMINISTIC_ATTENTION_BACKEND_CHOICES:
    server_args.DETERMINISTIC_ATTENTION_BACKEND_CHOICES.append("torch_native")
ModelRunner.maybe_enable_batch_invariant_mode = lambda self: None
CpuDeviceMixin.empty_cache = lambda self: None
ATTENTION_BACKENDS["torch_native"] = BatchedAttnBackend
ALLOC_MEMORY_FUNCS["cpu"] = lambda dims, dtype, device, pin_memory, allocator, **_: allocator.allocate(
    dims, dtype=dtype, device=device
)

_record_paused_state = Scheduler._record_scheduler_state_for_paused_engine


def _record_paused_state_then_sleep(self: Scheduler) -> None:
    _record_paused_state(self)
    self.maybe_sleep_on_idle()  # returns when a request arrives (or after 1 s); a no-op without --sleep-on-idle


Scheduler._record_scheduler_state_for_paused_engine = _record_paused_state_then_sleep

_set_envs_and_config = engine._set_envs_and_config


def _set_envs_and_config_then_fork(args) -> None:
    _set_envs_and_config(args)  # sets spawn, before any child starts
    multiprocessing.set_start_method("fork", force=True)


engine._set_envs_and_config = _set_envs_and_config_then_fork


def exit_if_port_taken(host: str, port: int) -> None:
    """Fail at once, as uvicorn would at the end of the start-up (with its message, which the launcher reads to
    retry on another port), when the HTTP port is taken: the model load before uvicorn's bind takes most of a start.
    """
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise
            print(
                f"ERROR: [Errno {exc.errno}] error while attempting to bind on address ({host!r}, {port}): "
                "address already in use",
                file=sys.stderr,
                flush=True,
            )
            sys.exit(1)


def main(argv: list[str]) -> None:
    """What ``python -m sglang.launch_server`` does, after the patches above."""
    from sglang.launch_server import run_server
    from sglang.srt.plugins import load_plugins
    from sglang.srt.utils import kill_process_tree

    load_plugins()
    exit_with_parent()
    args = server_args.prepare_server_args(argv)
    exit_if_port_taken(args.host, args.port)
    try:
        run_server(args)
    finally:
        # A server that stops (a port taken at bind time, a crash) must not leave its scheduler and detokenizer.
        kill_process_tree(os.getpid(), include_parent=False)


if __name__ == "__main__":
    main(sys.argv[1:])
