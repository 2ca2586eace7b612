"""Subprocesses in their own process group: start, tail the log, stop the whole group and prove every pid is gone.

SGLang's server forks a scheduler and a detokenizer (and more with TP); the router is one process. Each is started
in a new session, so killing its process group reaches every child even when the leader already died.
"""

import os
import random
import signal
import socket
import subprocess
import time
from pathlib import Path

# Servers bind their port tens of seconds after it is chosen. Ports from the kernel's ephemeral range
# (32768-60999 on Linux) may meanwhile become the source port of some outgoing connection, so choose below it.
_PORT_RANGE = (15000, 32000)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free right now, outside the ephemeral range."""
    for _ in range(1000):
        port = random.randint(*_PORT_RANGE)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((host, port))
            except OSError:
                continue
            return port
    raise OSError(f"no free TCP port in {_PORT_RANGE[0]}-{_PORT_RANGE[1]} on {host}")


def stat_fields(pid: int) -> list[str] | None:
    """``/proc/<pid>/stat`` after the command name (state, ppid, pgrp, ...), or ``None`` when ``pid`` is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name may contain spaces and parentheses: the fields start after the last ')'.
    return stat[stat.rindex(")") + 2 :].split()


def group_pids(pgid: int) -> list[int]:
    """Every live (non-zombie) process in process group ``pgid``, read from /proc."""
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = stat_fields(int(entry))
            if fields is not None and int(fields[2]) == pgid and fields[0] != "Z":
                pids.append(int(entry))
    return pids


def pid_alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    fields = stat_fields(pid)
    return fields is not None and fields[0] != "Z"


# SGLang's own files in /dev/shm (its load snapshot, its message queues). SGLang removes them on no path that a kill
# reaches (its CI sweeps /dev/shm instead), so every server left one or more behind, also after a clean stop.
SGLANG_SHM_PREFIXES = ("/dev/shm/sglang_loads_", "/dev/shm/sgl_shm_")


def sglang_shm_files(pids: list[int]) -> set[str]:
    """SGLang's /dev/shm files mapped by any of ``pids`` (read from ``/proc/<pid>/maps``)."""
    found = set()
    for pid in pids:
        try:
            maps = Path(f"/proc/{pid}/maps").read_text()
        except OSError:
            continue
        for line in maps.splitlines():
            path = line.split(maxsplit=5)[-1]
            if path.startswith(SGLANG_SHM_PREFIXES) and not path.endswith(" (deleted)"):
                found.add(path)
    return found


def remove_files(paths: set[str]) -> None:
    """Unlink ``paths`` (a process still mapping one keeps its pages until it ends)."""
    for path in paths:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass


def tail(path: Path, lines: int = 20) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


class ManagedProcess:
    """One command run in its own process group with stdout and stderr going to a log file."""

    def __init__(self, command: list[str], log_path: Path, env: dict[str, str] | None = None) -> None:
        self.command = command
        self.log_path = log_path
        self.env = env
        self.popen: subprocess.Popen | None = None
        self.known_pids: set[int] = set()

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.popen = subprocess.Popen(
                self.command,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self.env,
                start_new_session=True,  # its own process group: killpg reaches every child
            )
        self.known_pids = {self.popen.pid}

    @property
    def pid(self) -> int | None:
        return self.popen.pid if self.popen else None

    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def exit_code(self) -> int | None:
        return self.popen.poll() if self.popen else None

    def pids(self) -> list[int]:
        """Every live process of the group (the leader's pid is the group id), remembered for ``stop``."""
        if self.popen is None:
            return []
        found = group_pids(self.popen.pid)
        self.known_pids.update(found)
        return found

    def stop(self, grace: float = 15.0) -> None:
        """SIGTERM the group, SIGKILL what is left after ``grace`` seconds; raise if any pid survives."""
        if self.popen is None:
            return
        shm_files = sglang_shm_files(self.pids())
        pgid = self.popen.pid
        _signal_group(pgid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and (self.popen.poll() is None or group_pids(pgid)):
            time.sleep(0.2)
        if group_pids(pgid) or self.popen.poll() is None:
            _signal_group(pgid, signal.SIGKILL)
            for pid in list(self.known_pids):  # children that left the group still get killed by pid
                if pid_alive(pid):
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
        try:
            self.popen.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(pid_alive(p) for p in self.known_pids):
            time.sleep(0.1)
        survivors = [p for p in self.known_pids if pid_alive(p)]
        remove_files(shm_files)
        if survivors:
            raise RuntimeError(f"processes {survivors} of {self.command[:3]} survived SIGKILL")


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass
