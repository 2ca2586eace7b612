"""End a server when the process that started it dies.

Engines and the router run in their own sessions (``processes.ManagedProcess``), started by the rollout manager's
Ray worker. When that worker is killed outright (the driver's process group killed with SIGKILL takes Ray's workers
with it) nothing stops them: seen in the real-stack kill test, an SGLang server and the router outlived the run.

The watch is a small process in the server's process group, not a thread: the router's Rust main loop holds the
GIL, so a Python thread in it never runs (measured).
"""

import os
import signal
import subprocess
import sys
import time

from slime_sglang.processes import group_pids, remove_files, sglang_shm_files, stat_fields


def exit_with_parent() -> None:
    """Kill this process's group (this process, its children and the watcher) once this process's parent is gone,
    removing SGLang's /dev/shm files that the group maps."""
    command = [sys.executable, "-m", "slime_sglang.parent_watch", str(os.getpid()), str(os.getppid())]
    subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def watch(pid: int, parent: int, poll_interval: float = 1.0) -> None:
    """Run in a child of server ``pid``: a parent that dies leaves ``pid`` to init or a subreaper, which changes its
    parent pid. A server that ended on its own has left this watcher to init, too: then it just returns (``pid``
    may already belong to another process). Either way SGLang's /dev/shm files that the group mapped go: they are
    read while the group lives, as a server killed outright takes its children with it (SGLang's schedulers die
    with their parent) before this watcher sees it."""
    shm_files: set[str] = set()
    polls = 0
    while os.getppid() == pid:
        fields = stat_fields(pid)
        if fields is not None and int(fields[1]) != parent:
            group = int(fields[2])
            remove_files(shm_files | sglang_shm_files(group_pids(group)))  # first: the kill ends this watcher too
            os.killpg(group, signal.SIGKILL)
            return
        if fields is not None and polls % 10 == 0:  # made at start-up; a full /proc scan, so not every poll
            shm_files |= sglang_shm_files(group_pids(int(fields[2])))
        polls += 1
        time.sleep(poll_interval)
    remove_files(shm_files)


if __name__ == "__main__":
    watch(int(sys.argv[1]), int(sys.argv[2]))
