"""A Ray actor of the run that died or became unreachable, told as one line: which actor, and which node was lost.

Ray reports a lost node to the driver as the lost actors' errors (``ActorDiedError``, or ``ActorUnavailableError``
while its node is being declared dead), each a wall of RPC detail. The cluster's node table says what happened.
"""

import re
import time

import ray

from slime.errors import SlimeError

# Ray's GCS declares a node dead after its health checks fail (about 15 s with the defaults: 3 s period, 5 failures).
SETTLE_SECONDS = 30.0


class ActorLost(SlimeError):
    """An actor of the run died or cannot be reached (its process killed, or its node lost)."""


def alive_nodes() -> set[str]:
    """The ids of the cluster's live nodes (taken when a run starts: a node lost later is one of these)."""
    return {node["NodeID"] for node in _nodes() if node.get("Alive")}


def actor_lost(error: BaseException, nodes_at_start: set[str]) -> ActorLost | None:
    """The one-line error for ``error`` when a Ray actor's failure is behind it (also inside an actor's task
    error); ``None`` otherwise. Names the nodes of ``nodes_at_start`` that are dead now, read from the cluster's node
    table: call it while still connected to Ray."""
    cause = _actor_error(error)
    if cause is None:
        return None
    name = re.search(r"class_name: (\w+)", str(cause))
    actor = f"the {name.group(1)} actor" if name else "an actor of the run"
    lost = _lost_nodes(nodes_at_start)
    deadline = time.monotonic() + SETTLE_SECONDS
    while not lost and isinstance(cause, ray.exceptions.ActorUnavailableError) and time.monotonic() < deadline:
        time.sleep(1.0)  # unreachable before the cluster has declared its node dead: let the node table settle
        lost = _lost_nodes(nodes_at_start)
    if lost:
        nodes = ", ".join(f"{node.get('NodeManagerAddress', '?')} (id {node['NodeID'][:12]})" for node in lost)
        return ActorLost(f"Ray lost node {nodes} during the run, and {actor} with it")
    reason = " ".join(str(cause).split())
    gone = "cannot be reached" if isinstance(cause, ray.exceptions.ActorUnavailableError) else "died"
    return ActorLost(f"{actor} {gone}: {reason[:300]}")


def _lost_nodes(nodes_at_start: set[str]) -> list[dict]:
    return [node for node in _nodes() if node["NodeID"] in nodes_at_start and not node.get("Alive")]


def _actor_error(error: BaseException) -> ray.exceptions.RayActorError | None:
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, ray.exceptions.RayActorError):
            return current
        cause = getattr(current, "cause", None)  # a task's error raised in an actor
        current = cause if isinstance(cause, BaseException) else current.__cause__ or current.__context__
    return None


def _nodes() -> list[dict]:
    try:
        return ray.nodes()
    except Exception:  # no longer connected: say what is known without the node table
        return []
