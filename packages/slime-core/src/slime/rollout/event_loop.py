"""One event loop per process, in a background thread, for every async call slime makes from sync code.

Async HTTP clients (and their connection pools) belong to the loop that created them; running each rollout on a
fresh ``asyncio.run`` loop would strand them. Sync callers (the rollout manager's Ray methods) submit here instead.
"""

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any

_loop: asyncio.AbstractEventLoop | None = None
_lock = threading.Lock()


def _background_loop() -> asyncio.AbstractEventLoop:
    global _loop
    with _lock:
        if _loop is None:
            _loop = asyncio.new_event_loop()
            threading.Thread(target=_loop.run_forever, name="slime-async", daemon=True).start()
        return _loop


def run[T](coroutine: Coroutine[Any, Any, T]) -> T:
    """Run ``coroutine`` on the process's slime loop and wait for its result."""
    return asyncio.run_coroutine_threadsafe(coroutine, _background_loop()).result()
