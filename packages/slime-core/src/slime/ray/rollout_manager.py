"""The rollout manager: owns the rollout engine, the data source and the rollout/eval functions.

It runs as one Ray actor. ``generate`` turns a rollout into a ``TrainBatch`` plus its metrics; ``eval`` runs the
eval datasets and returns their metrics; ``save``/``load`` keep the data source's position with the trainer's
checkpoints.
"""

import argparse
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ray

from slime.backends import WeightReceiver
from slime.errors import SlimeError
from slime.metrics import eval_report, rollout_report
from slime.plugins import resolve
from slime.ray.engine_placement import EnginePlacer
from slime.ray.placement import Placement
from slime.rollout.custom_logging import custom_eval_log, custom_rollout_log
from slime.rollout.dumps import load_rollout_dump, save_rollout_dump
from slime.rollout.signatures import call_rollout_function, eval_output, train_output
from slime.rollout.train_batch import convert_samples_to_train_batch, newest_weight_version
from slime.types import Sample, TrainBatch
from slime.weights.disk import DiskWeightReceiver


@dataclass
class RolloutResult:
    # The TrainBatch, put in Ray's object store here: the driver hands the reference to the train actors, so the
    # per-token data is serialized once and never deserialized in the driver (nor re-serialized once per actor).
    batch: "ray.ObjectRef[TrainBatch]"
    # The rollout's metrics (rollout/*, multi_turn/*, passrate/*, its perf/*, plugins' keys), computed here: the
    # samples' per-token data stays in this actor instead of crossing Ray to the driver to be averaged. None when
    # --custom-rollout-log-function-path logged the rollout itself and asked to skip the default logging.
    metrics: dict[str, Any] | None
    weight_versions: list[str]  # per sample, the newest weight version that generated part of it ("" if unknown)


def data_source_state_path(save_dir: str, rollout_id: int) -> Path:
    return Path(save_dir) / "rollout" / f"data_source_{rollout_id}.json"


class NoEngine:
    """What a rollout function gets as its engine under --debug-train-only (none is started): using it is an error
    that says so, instead of an AttributeError on None deep in the function."""

    def __init__(self, rollout_function_path: str) -> None:
        self.rollout_function_path = rollout_function_path

    def __getattr__(self, name: str):
        raise SlimeError(
            f"--debug-train-only starts no rollout engine, but --rollout-function-path {self.rollout_function_path} "
            f"uses one ({name}); give --load-debug-rollout-data, or a rollout function that does not generate (sft)"
        )


class RolloutManager:
    def __init__(self, args: argparse.Namespace, placement: Placement | None = None, train: bool = True) -> None:
        self.args = args
        self.engine = None
        if not args.debug_train_only:
            # The backend starts its engines as actors in their own bundles (``EnginePlacer``); its router, if any,
            # runs here.
            self.engine = resolve("rollout_backends", args.rollout_backend)(args, EnginePlacer(args, placement))
        # An eval-only run has no training prompts.
        self.data_source = resolve("data_sources", args.data_source_path)(args) if train else None
        self.positions: dict[int, dict[str, Any]] = {}
        self.rollout_function = resolve("rollout_functions", args.rollout_function_path)
        self.eval_function = resolve("rollout_functions", args.eval_function_path, "--eval-function-path")

    def start(self) -> None:
        """Start the engines. Not in ``__init__``: Ray reports an exception raised there only as the actor's death,
        without the exception, so an engine that cannot start would reach the driver as a traceback of Ray's."""
        if self.engine is not None:
            self.engine.start()

    def num_prompts(self) -> int:
        return len(self.data_source)

    def generate(self, rollout_id: int) -> "RolloutResult":
        start = time.perf_counter()
        samples, metrics = self._rollout(rollout_id)
        rollout_time = time.perf_counter() - start
        # The data position right after this rollout: what a checkpoint of this rollout must record, even when
        # (--async) the next rollout has already moved the data source on.
        self.positions[rollout_id] = self.data_source.state_dict()
        if self.args.save_debug_rollout_data:
            save_rollout_dump(self.args.save_debug_rollout_data.format(rollout_id=rollout_id), rollout_id, samples)
        report = None
        if not custom_rollout_log(self.args, rollout_id, samples, metrics, rollout_time):
            report = rollout_report(self.args, rollout_id, samples, rollout_time=rollout_time, extra=metrics)
        return RolloutResult(
            batch=ray.put(convert_samples_to_train_batch(self.args, samples)),
            metrics=report,
            weight_versions=[newest_weight_version(sample) for sample in samples],
        )

    def _rollout(self, rollout_id: int) -> tuple[list[Sample], dict[str, Any]]:
        """The rollout's samples and its rollout function's metrics: generated, or read from a dump."""
        if self.args.load_debug_rollout_data:
            path = self.args.load_debug_rollout_data.format(rollout_id=rollout_id)
            return load_rollout_dump(path, rollout_id), {}
        engine = self.engine or NoEngine(self.args.rollout_function_path)
        return train_output(
            call_rollout_function(self.rollout_function, self.args, rollout_id, self.data_source, engine)
        )

    def eval(self, rollout_id: int) -> dict[str, Any] | None:
        """The ``eval/*`` metrics of one evaluation, computed here as the rollout's are: the samples stay here. None
        when --custom-eval-rollout-log-function-path logged it and asked to skip the default logging."""
        output = call_rollout_function(
            self.eval_function, self.args, rollout_id, self.data_source, self.engine, evaluation=True
        )
        results, metrics = eval_output(output)
        if custom_eval_log(self.args, rollout_id, results, metrics):
            return None
        return eval_report(self.args, rollout_id, results, extra=metrics)

    def save(self, rollout_id: int) -> None:
        path = data_source_state_path(self.args.save, rollout_id)
        self.data_source.save(path, self.positions.pop(rollout_id))
        for older in [r for r in self.positions if r < rollout_id]:
            del self.positions[older]

    def load(self, rollout_id: int) -> None:
        self.data_source.load(data_source_state_path(self.args.load, rollout_id))

    def weight_receiver(self) -> WeightReceiver:
        if self.args.update_weight_transport == "disk":
            directory = self.args.update_weight_disk_dir or str(Path(self.args.output_dir) / "weights")
            handle = ray.get_runtime_context().current_actor
            return DiskWeightReceiver(handle, self.args.hf_checkpoint, directory)
        return self.engine.weight_receiver()

    def update_weights_from_disk(self, path: str, weight_version: str) -> None:
        self.engine.update_weights_from_disk(path, weight_version)

    def weights_updated(self, weight_version: str) -> None:
        if self.args.update_weight_transport != "disk":  # the disk receiver went through update_weights_from_disk
            self.engine.weights_updated(weight_version)

    def release_memory(self) -> None:
        self.engine.release_memory()

    def resume_memory(self, tags: list[str] | None = None) -> None:
        self.engine.resume_memory(tags)

    def shutdown(self) -> None:
        if self.engine is not None:
            self.engine.shutdown()
