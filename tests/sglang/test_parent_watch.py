"""A router or engine whose parent (the rollout manager's Ray worker) is killed outright does not outlive it."""

import os
import signal
import subprocess
import sys
import textwrap
import time

from slime_sglang.processes import group_pids

STARTER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from slime_sglang.router import SGLangRouter

    router = SGLangRouter(Path(sys.argv[1]) / "router.log")
    router.launch()
    print(router.process.pid, flush=True)
    time.sleep(600)
    """
)


def test_router_ends_when_its_parent_is_killed(tmp_path) -> None:
    starter = subprocess.Popen([sys.executable, "-c", STARTER, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        router_group = int(starter.stdout.readline())
        assert group_pids(router_group), "the router did not start"
        os.kill(starter.pid, signal.SIGKILL)  # as Ray's worker dies when the driver's process group is killed
        starter.wait()
        deadline = time.monotonic() + 10
        while group_pids(router_group) and time.monotonic() < deadline:
            time.sleep(0.2)
        left = group_pids(router_group)
        if left:
            os.killpg(router_group, signal.SIGKILL)
        assert not left, f"router processes {left} outlived the process that started them"
    finally:
        starter.kill()


def test_watcher_leaves_when_the_router_ends_on_its_own(tmp_path) -> None:
    from slime_sglang.router import SGLangRouter

    router = SGLangRouter(tmp_path / "router.log")
    router.launch()
    group = router.process.pid
    try:
        watchers = [pid for pid in group_pids(group) if pid != group]
        assert len(watchers) == 1, f"expected one watcher besides the router in its group, found {watchers}"
        os.kill(group, signal.SIGKILL)  # the router dies; this process, its parent, lives on
        router.process.popen.wait()
        deadline = time.monotonic() + 10
        while group_pids(group) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not group_pids(group), "the watcher stayed after the router it watched had ended"
    finally:
        router.shutdown()
