"""slime's fully asynchronous rollout: ``--rollout-function-path fully_async`` (or slime's path,
``slime.rollout.fully_async_rollout.generate_rollout_fully_async``).

A pool of groups stays in flight across rollouts, so the engines keep generating while the trainer trains. Each call
takes the first ``--rollout-batch-size`` groups to finish (handed over in data order) and tops the pool up to that
many groups in flight again before it returns: the next rollout's groups generate during this one's training.

Weight updates pause the engines (SGLang retracts the running requests and recomputes them with the new weights), so
a sample may hold tokens of two policy versions; its rollout log-probs are those each token was sampled with, which
``--use-tis`` corrects for. Each group records the weight version its generation started with; a group that started
more than ``--max-staleness`` versions before the policy it would train is dropped (its prompt is spent, as with a
dynamic filter's drop) and counted in ``rollout/fully_async/dropped_stale``. A group the engines aborted goes back to
the data source and continues later (as slime's worker requeues it).

As in slime's: evaluation runs the default eval path; after a resume, the prompts that were in the pool when the
checkpoint was written are not generated again (at most ``--rollout-batch-size`` groups).
"""

import argparse
import asyncio
from dataclasses import dataclass, field
from typing import Any

from slime.backends import RolloutEngine
from slime.errors import SlimeError
from slime.rollout import default, event_loop
from slime.rollout.default import RolloutOutput, group_aborted, reset_for_continuation
from slime.rollout.generate import generate_group
from slime.rollout.sample_hooks import current_rollout_id
from slime.rollout.sampling import rollout_sampling_params
from slime.types import Sample


@dataclass
class GroupPool:
    """The groups in flight on one engine, kept between rollouts on the process's slime event loop."""

    engine: RolloutEngine
    in_flight: dict[asyncio.Task, int | None] = field(default_factory=dict)  # task -> weight version it started on

    def top_up(self, args: argparse.Namespace, data_source: Any, sampling_params: dict[str, Any], size: int) -> None:
        while len(self.in_flight) < size:
            groups = data_source.get_samples(min(args.over_sampling_batch_size, size - len(self.in_flight)))
            if not groups:
                return
            version = _version(self.engine.weight_version)
            for group in groups:
                task = asyncio.create_task(generate_group(args, group, sampling_params, self.engine))
                self.in_flight[task] = version

    async def next_finished(self) -> tuple[list[Sample], int | None]:
        """The earliest-started group among those that have finished (a failed generation raises here)."""
        if not self.in_flight:
            raise SlimeError("the fully asynchronous rollout ran out of prompts: the data source gave no more groups")
        done, _ = await asyncio.wait(self.in_flight, return_when=asyncio.FIRST_COMPLETED)
        task = next(task for task in self.in_flight if task in done)
        return task.result(), self.in_flight.pop(task)


_pool: GroupPool | None = None


def _version(weight_version: str | None) -> int | None:
    return int(weight_version) if weight_version is not None and weight_version.isdigit() else None


async def generate_rollout_async(
    args: argparse.Namespace, rollout_id: int, data_source: Any, engine: RolloutEngine
) -> RolloutOutput:
    global _pool
    if _pool is None or _pool.engine is not engine:
        _pool = GroupPool(engine)
    current_rollout_id.set(rollout_id)
    target = args.rollout_batch_size
    sampling_params = rollout_sampling_params(args)
    accepted: list[list[Sample]] = []
    staleness: list[int] = []
    dropped = 0
    while len(accepted) < target:
        _pool.top_up(args, data_source, sampling_params, target)
        group, started = await _pool.next_finished()
        if group_aborted(group):
            data_source.add_samples([reset_for_continuation(group)])
            continue
        lag = 0 if started is None else rollout_id - started
        if lag > args.max_staleness:
            dropped += 1
            continue
        for sample in group:
            sample.rollout_id = rollout_id
        accepted.append(group)
        staleness.append(lag)
    _pool.top_up(args, data_source, sampling_params, target)  # generates while this rollout trains
    accepted.sort(key=lambda group: group[0].group_index)
    metrics = {
        "rollout/fully_async/dropped_stale": float(dropped),
        "rollout/fully_async/staleness_mean": sum(staleness) / len(staleness),
        "rollout/fully_async/staleness_max": float(max(staleness)),
        "rollout/fully_async/in_flight": float(len(_pool.in_flight)),
    }
    return RolloutOutput(groups=accepted, metrics=metrics)


def generate_rollout_fully_async(
    args: argparse.Namespace, rollout_id: int, data_source: Any, engine: RolloutEngine, evaluation: bool = False
) -> Any:
    """The rollout-function entry: a train rollout from the pool, or (``evaluation=True``) the default eval."""
    if evaluation:
        return default.generate_rollout(args, rollout_id, data_source, engine, evaluation=True)
    return event_loop.run(generate_rollout_async(args, rollout_id, data_source, engine))
