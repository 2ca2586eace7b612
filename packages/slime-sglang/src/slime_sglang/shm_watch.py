"""Remove a process's torch shared memory from /dev/shm once the process is gone.

The shared-memory weight sender's buffer is ``/dev/shm/torch_<pid>_*`` (torch's ``file_system`` strategy). The
sender removes it at close or exit, but a train actor killed outright (SIGKILL, its node's raylet gone, Ray ending the
job after its driver died) runs neither, and the buffer, as large as a weight bucket, stayed behind. This watcher, in
a session of its own so that the kill of the actor's process group does not take it, waits for the process to end
and removes what it left.
"""

import glob
import os
import subprocess
import sys
import time

from slime_sglang.processes import remove_files, stat_fields

_started: set[int] = set()


def remove_torch_shm_after_exit() -> None:
    """Start the watcher for this process (once per process)."""
    pid = os.getpid()
    if pid in _started:
        return
    _started.add(pid)
    launcher = subprocess.Popen(
        [sys.executable, "-m", "slime_sglang.shm_watch", str(pid)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    launcher.wait()  # it forks the watcher and exits at once


def watch(pid: int, poll_interval: float = 1.0) -> None:
    """Wait until ``pid`` (the process that was running when the watch began: its start time tells a reused pid
    apart) has ended, then remove its ``torch_<pid>_*`` files."""
    started = _start_time(pid)
    while started is not None and _start_time(pid) == started:
        time.sleep(poll_interval)
    remove_files(set(glob.glob(f"/dev/shm/torch_{pid}_*")))


def _start_time(pid: int) -> str | None:
    fields = stat_fields(pid)
    return None if fields is None or fields[0] == "Z" else fields[19]  # /proc/<pid>/stat field 22: starttime


if __name__ == "__main__":
    # Detached from the process it watches: Ray kills a worker's children when the worker ends.
    if os.fork() > 0:
        os._exit(0)
    watch(int(sys.argv[1]))
