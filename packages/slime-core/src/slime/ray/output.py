"""Wait for the actors' output to reach the driver before Ray shuts down.

Ray forwards what actors print (log files -> log monitor -> GCS -> the driver's print thread) asynchronously, and
``ray.shutdown()`` drops what has not arrived yet (ray-project/ray#31931): a warning an actor logged in the last
second of a run, or the context of the error that ended it, would be lost. So before shutting down, the driver runs
a task that prints a marker and waits until the marker comes back: the log monitor reads the files in order, so what
the actors wrote before it has been printed by then. The marker itself is not printed.
"""

import sys
import threading
import time
import uuid

import ray

# Ray's driver-side fan-out of forwarded output (internal; ray is pinned in uv.lock). Its handler list is run in
# order for every batch of lines, the console printer first.
from ray._private.ray_logging import global_worker_stdstream_dispatcher as _dispatcher


@ray.remote(num_cpus=0)
def _print_marker(marker: str) -> None:
    print(marker, file=sys.stderr, flush=True)


def drain_actor_output(timeout: float = 10.0) -> bool:
    """Block until what the actors printed so far has been printed here; False if that took over ``timeout`` s.

    Best effort by design: it runs while a run ends, also when it ends because Ray failed, and must not replace
    that error with its own.
    """
    deadline = time.monotonic() + timeout
    marker = f"slime-end-of-output-{uuid.uuid4().hex}"
    arrived = threading.Event()

    def take_marker(batch: dict) -> None:
        if marker in batch["lines"]:
            batch["lines"] = [line for line in batch["lines"] if line != marker]
            arrived.set()

    with _dispatcher._lock:
        # First, so the marker is taken out before the console printer sees the batch.
        _dispatcher.handlers = [(marker, take_marker), *_dispatcher.handlers]
    try:
        ray.get(_print_marker.remote(marker), timeout=timeout)
        return arrived.wait(max(0.0, deadline - time.monotonic()))
    except ray.exceptions.RayError:  # timed out, or Ray is going down with the run
        return False
    finally:
        _dispatcher.remove_handler(marker)
