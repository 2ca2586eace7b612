"""The SGLang servers the rollout manager's engine actors start run with the engines' CPU threads (Ray gives every
actor OMP_NUM_THREADS=1, and the servers would inherit it), and the manager's args name the router it started; read
from the processes themselves."""

import os
from pathlib import Path

import pytest
import ray

from slime.config.arguments import parse_args
from slime.ray.rollout_manager import RolloutManager

pytestmark = pytest.mark.slow


def omp_threads(pid: int) -> str | None:
    for entry in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"):
        if entry.startswith(b"OMP_NUM_THREADS="):
            return entry.split(b"=", 1)[1].decode()
    return None


def test_servers_get_the_engine_threads_and_args_name_the_router(ray_runtime, tiny_model, tmp_path) -> None:
    args = parse_args(
        [
            "--hf-checkpoint", str(tiny_model), "--sglang-device", "cpu", "--output-dir", str(tmp_path),
            "--sglang-max-total-tokens", "2048", "--sglang-server-start-timeout", "900",
        ]
    )  # fmt: skip
    # No placement (as ``slime eval``): the one engine takes this node's cores.
    manager = ray.remote(num_cpus=0)(RolloutManager).remote(args, train=False)
    try:
        ray.get(manager.start.remote())
        pids, router, router_in_args = ray.get(
            manager.__ray_call__.remote(
                lambda self: (
                    [pid for server in self.engine.servers for pid in server.pids()],
                    self.engine.router.url,
                    f"http://{self.args.sglang_router_ip}:{self.args.sglang_router_port}",
                )
            )
        )
        expected = str(min(2, len(os.sched_getaffinity(0))))
        assert len(pids) >= 3  # server, scheduler, detokenizer (and the watcher)
        assert {pid: omp_threads(pid) for pid in pids} == dict.fromkeys(pids, expected)
        assert router_in_args == router
    finally:
        ray.get(manager.shutdown.remote())
        ray.kill(manager)
