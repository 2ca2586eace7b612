"""Killing an engine mid-rollout (``--use-fault-tolerance``): the health monitor restarts and re-registers it, and the
rollout completes on the engines that are up. Runs last in the session: it replaces one engine."""

import asyncio
import os
import signal
import time

import pytest

from slime.types import Sample, Status
from slime_sglang.processes import pid_alive

pytestmark = pytest.mark.slow


def test_killed_engine_is_restarted_and_the_rollout_completes(engine) -> None:
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
    assert sorted(engine.router.worker_urls()) == sorted(engine.engine_urls)
    assert engine.health() == [True, True]

    async def after():
        return await engine.generate(Sample(tokens=[5, 6, 7]), {"temperature": 0.0, "max_new_tokens": 4})

    assert asyncio.run(after()).response_length > 0
