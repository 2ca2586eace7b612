"""Symbolic answer equivalence with math-verify, bounded in time.

Parsing LaTeX and simplifying with sympy can take arbitrarily long (``10^{10^{10}}``, a huge polynomial), and the
slow part can sit in C code that no signal interrupts. So checks run in worker processes
(``python -m slime_rewards_math.verify_worker``): inside a worker, math-verify's own signal-based timeouts stop the
common slow cases; from outside, a deadline per check kills a worker that stays stuck anyway, and the next check
starts a fresh one. The rollout's event loop never blocks: each worker is driven by a thread of a small pool.

Workers are plain subprocesses rather than a ``multiprocessing`` pool: spawning those re-imports the caller's main
module, which breaks in scripts without an ``if __name__ == "__main__"`` guard, and forking a process with threads
(the rollout has several) can deadlock the child.
"""

import asyncio
import json
import logging
import os
import select
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 5  # per math-verify step (parse gold, parse prediction, compare); whole seconds (signal.alarm)
STARTUP_TIMEOUT_S = 120.0  # a worker imports sympy and an ANTLR parser before its first check: slow on a busy machine
WORKERS = max(1, min(4, (os.cpu_count() or 2) // 2))


class VerifyWorker:
    """One worker process and its pipes: a JSON request per line in, a JSON reply per line out."""

    def __init__(self) -> None:
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))  # the parent's imports resolve
        self.process = subprocess.Popen(
            [sys.executable, "-m", "slime_rewards_math.verify_worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        ready = self._read_line(STARTUP_TIMEOUT_S)
        if json.loads(ready) != {"ready": True}:
            self.kill()
            raise RuntimeError(f"answer-check worker sent {ready!r} instead of its ready line")

    def _read_line(self, timeout_s: float) -> str:
        readable, _, _ = select.select([self.process.stdout], [], [], timeout_s)
        if not readable:
            self.kill()
            raise TimeoutError(f"answer-check worker gave no answer within {timeout_s} s")
        line = self.process.stdout.readline()  # the worker writes whole lines, so this does not wait for more
        if not line:
            self.kill()
            raise RuntimeError(f"answer-check worker exited (status {self.process.wait()})")
        return line

    def ask(self, request: dict[str, Any], deadline_s: float) -> dict[str, Any]:
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        return json.loads(self._read_line(deadline_s))

    def alive(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> None:
        self.process.kill()
        self.process.wait()


class WorkerPool:
    """``WORKERS`` threads, each owning one worker process (started on first use, replaced after a timeout).

    A check waits for a free thread before its deadline starts, so the deadline measures the check, not the queue.
    """

    def __init__(self, workers: int = WORKERS) -> None:
        self._threads = ThreadPoolExecutor(workers, thread_name_prefix="answer-check")
        self._local = threading.local()
        self._lock = threading.Lock()
        self.workers: list[VerifyWorker] = []  # the live workers, for close()

    def _ask(self, request: dict[str, Any], deadline_s: float) -> dict[str, Any]:
        worker = getattr(self._local, "worker", None)
        if worker is None or not worker.alive():
            worker = self._local.worker = VerifyWorker()
            with self._lock:
                self.workers = [w for w in self.workers if w.alive()] + [worker]
        return worker.ask(request, deadline_s)

    def close(self) -> None:
        self._threads.shutdown(wait=True)
        with self._lock:
            for worker in self.workers:
                if worker.alive():
                    worker.kill()

    async def ask(self, request: dict[str, Any], deadline_s: float) -> dict[str, Any]:
        return await asyncio.get_running_loop().run_in_executor(self._threads, self._ask, request, deadline_s)


_POOL = WorkerPool()


async def symbolically_equal(gold: str, prediction: str, timeout_s: int = DEFAULT_TIMEOUT_S) -> bool:
    """Whether math-verify finds the two answers equal; False when it cannot decide in time."""
    deadline_s = 3 * timeout_s + 2.0
    request = {"gold": gold, "prediction": prediction, "timeout_s": timeout_s}
    try:
        reply = await _POOL.ask(request, deadline_s)
    except TimeoutError:
        logger.warning("answer check gave up after %s s: %.80r vs %.80r", deadline_s, gold, prediction)
        return False
    if "error" in reply:
        logger.warning("answer check failed on %.80r vs %.80r: %s", gold, prediction, reply["error"])
        return False
    return bool(reply["equal"])
