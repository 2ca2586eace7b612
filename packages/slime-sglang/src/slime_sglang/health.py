"""Fault tolerance (``--use-fault-tolerance``): a thread pings every engine and restarts the ones that stopped.

Settings are slime's: ``--rollout-health-check-first-wait`` before the first ping, then one round every
``--rollout-health-check-interval`` seconds, each ping (``/health_generate``, one generated token) allowed
``--rollout-health-check-timeout`` seconds.
"""

import logging
import threading
from collections.abc import Callable

logger = logging.getLogger(__name__)


class HealthMonitor:
    def __init__(
        self,
        check: Callable[[int], bool],
        restart: Callable[[int], None],
        num_engines: Callable[[], int],
        interval: float,
        first_wait: float = 0.0,
    ) -> None:
        self.check = check  # engine index -> healthy?
        self.restart = restart  # engine index -> brings it back (raises if it cannot)
        self.num_engines = num_engines
        self.interval = interval
        self.first_wait = first_wait
        self.restarts = 0
        self.last_error: Exception | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="slime-sglang-health", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        if self._stop.wait(self.first_wait):
            return
        while not self._stop.is_set():
            for index in range(self.num_engines()):
                if self._stop.is_set():
                    return
                if self.check(index):
                    continue
                logger.warning("engine %d failed its health check; restarting it", index)
                try:
                    self.restart(index)
                    self.restarts += 1
                except Exception as exc:  # keep watching the others; the engine reports the error to callers
                    logger.error("restarting engine %d failed: %s", index, exc)
                    self.last_error = exc
            self._stop.wait(self.interval)

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=60)
