"""slime's default rollout function: groups of samples generated concurrently, scored, and dynamically filtered.

One rollout asks the data source for ``--over-sampling-batch-size`` groups at a time and keeps generating until
``--rollout-batch-size`` groups pass the dynamic-sampling filter; then it aborts what is still running. With
``--partial-rollout``, groups that were cut short go back to the data source and continue in the next rollout.
At the end, as in slime, ``--rollout-sample-filter-path`` ``f(args, groups)`` may set ``remove_sample`` on the kept
groups, and ``--rollout-all-samples-process-path`` ``f(args, all_groups, data_source)`` sees every finished group,
those the dynamic filter dropped included.
"""

import argparse
import asyncio
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from ray.experimental import tqdm_ray

from slime.backends import RolloutEngine
from slime.eval.generate import generate_eval
from slime.plugins import load_object, resolve
from slime.rollout import event_loop
from slime.rollout.filters import FilterOutput, as_filter_output
from slime.rollout.generate import generate_group
from slime.rollout.sample_hooks import current_rollout_id
from slime.rollout.sampling import rollout_sampling_params
from slime.types import Sample, Status


@dataclass
class RolloutOutput:
    groups: list[list[Sample]]  # accepted groups, in data order
    metrics: dict[str, float] = field(default_factory=dict)  # rollout/dynamic_filter/drop_<reason>, ...

    @property
    def samples(self) -> list[Sample]:
        return [sample for group in self.groups for sample in group]


def group_aborted(group: list[Sample]) -> bool:
    return any(sample.status is Status.ABORTED for sample in group)


async def generate_rollout_async(
    args: argparse.Namespace, rollout_id: int, data_source: Any, engine: RolloutEngine
) -> RolloutOutput:
    current_rollout_id.set(rollout_id)  # this task's (and its generate tasks') rollout, for the sample hooks
    target = args.rollout_batch_size
    sampling_params = rollout_sampling_params(args)
    sample_filter = None
    if args.dynamic_sampling_filter_path:
        sample_filter = resolve("sample_filters", args.dynamic_sampling_filter_path)
    accepted: list[list[Sample]] = []
    finished: list[list[Sample]] = []  # every group that came back, dropped ones included
    drops: Counter[str] = Counter()
    in_flight: set[asyncio.Task] = set()
    # Ray's tqdm: the driver draws the bar of this rollout-manager actor.
    progress = tqdm_ray.tqdm(desc=f"rollout {rollout_id}", total=target * args.n_samples_per_prompt, unit="sample")
    try:
        while len(accepted) < target:
            # Keep enough groups in flight that, if all pass the filter, the target is reached.
            while len(accepted) + len(in_flight) < target:
                for group in data_source.get_samples(args.over_sampling_batch_size):
                    for sample in group:
                        sample.rollout_id = rollout_id
                    in_flight.add(asyncio.create_task(generate_group(args, group, sampling_params, engine)))
            done, in_flight = await asyncio.wait(in_flight, return_when=asyncio.FIRST_COMPLETED)
            for position, task in enumerate(done):
                group = task.result()
                if group_aborted(group):
                    raise RuntimeError(f"rollout {rollout_id}: the engine aborted a group before the rollout ended")
                finished.append(group)
                verdict = _filter(args, sample_filter, group)
                # Groups that could still fill the batch: accepted, in flight, and this one with the rest of `done`.
                candidates = len(accepted) + len(in_flight) + len(done) - position
                if verdict.keep or (verdict.keep_when_insufficient and candidates <= target):
                    accepted.append(group)
                    progress.update(len(group))
                else:
                    drops[verdict.reason] += 1
    except BaseException:
        for task in in_flight:  # a failed rollout leaves nothing running
            task.cancel()
        await asyncio.gather(*in_flight, return_exceptions=True)
        raise
    finally:
        progress.close()

    leftovers: list[list[Sample]] = []
    if in_flight:
        await engine.abort()
        leftovers = list(await asyncio.gather(*in_flight))
    accepted.sort(key=lambda group: group[0].group_index)
    leftovers.extend(accepted[target:])  # groups that finished in the same round as the last accepted one
    accepted = accepted[:target]
    if args.partial_rollout:
        data_source.add_samples([reset_for_continuation(group) for group in leftovers])
    if args.rollout_sample_filter_path:
        load_object(args.rollout_sample_filter_path, "--rollout-sample-filter-path")(args, accepted)
    if args.rollout_all_samples_process_path:
        process = load_object(args.rollout_all_samples_process_path, "--rollout-all-samples-process-path")
        process(args, sorted(finished, key=lambda group: group[0].group_index), data_source)
    metrics = {f"rollout/dynamic_filter/drop_{reason}": float(count) for reason, count in sorted(drops.items())}
    return RolloutOutput(groups=accepted, metrics=metrics)


def _filter(args: argparse.Namespace, sample_filter: Any, group: list[Sample]) -> FilterOutput:
    if sample_filter is None:
        return FilterOutput(keep=True)
    return as_filter_output(sample_filter(args, group), args.dynamic_sampling_filter_path)


def reset_for_continuation(group: list[Sample]) -> list[Sample]:
    """An aborted sample keeps its partial response and continues from it; finished ones are kept as they are."""
    for sample in group:
        if sample.status is Status.ABORTED:
            sample.status = Status.PENDING
            sample.reward = None
    return group


def generate_rollout(
    args: argparse.Namespace, rollout_id: int, data_source: Any, engine: RolloutEngine, evaluation: bool = False
) -> Any:
    """slime's rollout-function entry: train rollout, or (``evaluation=True``) the eval datasets."""
    if evaluation:
        return event_loop.run(generate_eval(args, rollout_id, engine))
    return event_loop.run(generate_rollout_async(args, rollout_id, data_source, engine))
