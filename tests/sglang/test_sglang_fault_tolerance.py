"""Killing an engine mid-rollout (``--use-fault-tolerance``): the health monitor restarts and re-registers it, the
rollout completes on the engines that are up, and later weight updates reach the new engine. Runs last in the
session: it replaces one engine."""

import asyncio
import os
import signal
import sys
import time
from pathlib import Path

import pytest

from slime.types import Sample, Status
from slime_sglang import weight_updates
from slime_sglang.processes import pid_alive

sys.path.insert(0, str(Path(__file__).parent))
from engine_checks import check_engine_matches, hf_named_tensors, perturbed  # noqa: E402

pytestmark = pytest.mark.slow


def update_through_a_fresh_receiver(engine, model, version: str, same_node: bool) -> None:
    """What the loop does for every update: a receiver from the engine as it is now, send, tell the engine."""
    receiver = engine.weight_receiver()
    if not same_node:
        receiver.engine_nodes = ["another-node"] * len(receiver.engine_nodes)
    receiver.update_weights(hf_named_tensors(model), version)
    engine.weights_updated(version)


def test_killed_engine_is_restarted_the_rollout_completes_and_updates_reach_it(
    engine, hf_model, hf_greedy, tiny_model
) -> None:
    # A broadcast group over the engines as they are before the kill (as a run's earlier updates leave it), and
    # weights newer than any on disk: a restarted engine cannot load them.
    update_through_a_fresh_receiver(engine, perturbed(hf_model, seed=11), "40", same_node=False)

    victim = engine.servers[1]
    old_pid, old_url, old_pids = victim.pid, victim.url, victim.pids()
    restarts = engine.monitor.restarts
    params = {"temperature": 0.0, "max_new_tokens": 200, "ignore_eos": True}
    prompts = [[7 + i, 11, 13 + i] for i in range(12)]

    async def rollout():
        tasks = [
            asyncio.create_task(engine.generate(Sample(index=i, tokens=list(p)), params)) for i, p in enumerate(prompts)
        ]
        await asyncio.sleep(1.5)
        os.kill(old_pid, signal.SIGKILL)  # the server's main process only; its children are left to slime
        return await asyncio.wait_for(asyncio.gather(*tasks), timeout=400)

    samples = asyncio.run(rollout())
    assert [s.status for s in samples] == [Status.TRUNCATED] * len(prompts)
    assert all(s.response_length == 200 for s in samples)

    deadline = time.monotonic() + 400
    while engine.monitor.restarts == restarts and time.monotonic() < deadline:
        time.sleep(1)
    assert engine.monitor.restarts == restarts + 1, engine.monitor.last_error
    new = engine.servers[1]
    assert new.url != old_url and new.pid != old_pid
    assert not [p for p in old_pids if pid_alive(p)]  # the old server's children went with it
    assert engine.health() == [True, True]
    # It serves the weights on disk, older than the others': out of the router until an update reaches it.
    assert engine.router.worker_urls() == [engine.servers[0].url] and engine.awaiting_weights == [new]

    async def after():
        return await engine.generate(Sample(tokens=[5, 6, 7]), {"temperature": 0.0, "max_new_tokens": 4})

    assert asyncio.run(after()).response_length > 0

    try:
        # The old group is left (the dead engine skipped) and a new one includes the restarted engine; then the
        # shared-memory path, which a CPU run on one host takes.
        for version, seed, same_node in (("42", 12, False), ("43", 13, True)):
            model = perturbed(hf_model, seed=seed)
            update_through_a_fresh_receiver(engine, model, version, same_node)
            assert sorted(engine.router.worker_urls()) == sorted(engine.engine_urls) and not engine.awaiting_weights
            check_engine_matches(engine, model, hf_greedy)
            while weight_updates._senders:
                weight_updates._senders.popitem()[1].close()
    finally:
        engine.update_weights_from_disk(str(tiny_model), weight_version="44")
