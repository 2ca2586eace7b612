"""Distributed checkpoints (megatron-core ``dist_checkpointing``, torch_dist format) of model, optimizer and RNG.

Layout, as Megatron-LM writes it: ``<dir>/iter_0000007/`` per saved rollout id and ``<dir>/latest_checkpointed_
iteration.txt`` naming the newest. A save is atomic: every rank writes into ``iter_0000007.tmp``, rank 0 renames it
to ``iter_0000007`` once all ranks are done, and only then replaces the pointer. A crash mid-save leaves the previous
checkpoint and pointer untouched. Tensors are saved sharded by their global layout, so a checkpoint written at one
TP/PP size loads at another; the RNG states belong to one layout and are skipped (with a warning) under another.
"""

import logging
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from megatron.core import dist_checkpointing, parallel_state, tensor_parallel
from megatron.core.dist_checkpointing.mapping import ShardedObject
from megatron.core.dist_checkpointing.strategies import filesystem_async
from megatron.core.optimizer.distrib_optimizer import DistributedOptimizer
from torch.distributed.checkpoint.api import CheckpointException

from slime.files import atomic_write, fresh_staging_dir, publish_dir, staging_path
from slime_megatron.model import unwrap_model
from slime_megatron.optimizer import Trainable

logger = logging.getLogger(__name__)

POINTER = "latest_checkpointed_iteration.txt"
# The distributed optimizer's state saves (and reshards across data-parallel sizes) only in this format.
OPTIMIZER_METADATA = {"distrib_optim_sharding_type": "dp_reshardable"}


class CheckpointSaveError(RuntimeError):
    """A checkpoint could not be written (disk full, permissions); the previous one is untouched."""


# A converted checkpoint (weights only, no training state) is Megatron-LM's "release": a run loading it starts at 0.
RELEASE = -1


def iteration_dir(root: str | Path, iteration: int) -> Path:
    return Path(root) / ("release" if iteration == RELEASE else f"iter_{iteration:07d}")


def latest_iteration(root: str | Path) -> int | None:
    """The iteration the pointer names (``RELEASE`` for a converted checkpoint), or ``None`` when there is none."""
    pointer = Path(root) / POINTER
    if not pointer.exists():
        return None
    text = pointer.read_text().strip()
    return RELEASE if text == "release" else int(text)


def _layout() -> dict[str, int]:
    return {
        "tp": parallel_state.get_tensor_model_parallel_world_size(),
        "pp": parallel_state.get_pipeline_model_parallel_world_size(),
    }


def _rng_state() -> ShardedObject:
    """This rank's RNG states, one object per (PP, TP) position (data-parallel peers hold the same)."""
    state = {
        "random": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state() if torch.cuda.is_available() else None,
        "tracker": tensor_parallel.get_cuda_rng_tracker().get_states(),
    }
    layout = _layout()
    return ShardedObject(
        "rng_state",
        state,
        (layout["pp"], layout["tp"]),
        (parallel_state.get_pipeline_model_parallel_rank(), parallel_state.get_tensor_model_parallel_rank()),
        replica_id=parallel_state.get_data_parallel_rank(),
    )


def _set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["random"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if state["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])
    tensor_parallel.get_cuda_rng_tracker().set_states(state["tracker"])


def _has_optimizer_state(trainable: Trainable) -> bool:
    """False until the first optimizer step creates Adam's moments (a fresh optimizer has nothing to save)."""
    optimizers = getattr(trainable.optimizer, "chained_optimizers", [trainable.optimizer])
    return any(len(optimizer.optimizer.state) > 0 for optimizer in optimizers)


def _give_fresh_optimizer_state(trainable: Trainable) -> None:
    """A distributed optimizer that never stepped cannot describe its state for loading (its step count is read from
    Adam's per-parameter state, which does not exist yet); megatron-core's own remedy is one zero-gradient step, whose
    effects the load then overwrites."""
    for optimizer in getattr(trainable.optimizer, "chained_optimizers", [trainable.optimizer]):
        if isinstance(optimizer, DistributedOptimizer) and not optimizer.optimizer.state:
            optimizer._init_optimizer_states_with_dummy_values()


def _restore_adam_steps(trainable: Trainable) -> None:
    """Without Apex/TransformerEngine, megatron's DistributedOptimizer keeps Adam's step count in its param groups
    (the checkpoint's count) but loads it into torch's per-parameter state wrongly: the per-parameter ``step`` of the
    state it started from survives, or one tensor is shared by every parameter (and Adam then increments it once per
    parameter). Either breaks Adam's bias correction; each parameter gets its own copy of its group's count."""
    for optimizer in getattr(trainable.optimizer, "chained_optimizers", [trainable.optimizer]):
        if not isinstance(optimizer, DistributedOptimizer):
            continue
        inner = optimizer.optimizer
        for group in inner.param_groups:
            if "step" not in group:
                continue
            for param in group["params"]:
                if "step" in inner.state.get(param, {}):
                    inner.state[param]["step"] = torch.tensor(float(group["step"]), dtype=torch.float32)


def _state(trainable: Trainable, iteration: int, *, is_loading: bool, with_optimizer: bool, with_rng: bool) -> dict:
    model = unwrap_model(trainable.model).sharded_state_dict()
    state: dict[str, Any] = {
        "model": model,
        "iteration": iteration,
        "layout": _layout(),
        "scheduler": trainable.scheduler.state_dict(),
        "has_optimizer": with_optimizer,
        "has_rng": True,
    }
    if with_optimizer:
        if is_loading:
            _give_fresh_optimizer_state(trainable)
        state["optimizer"] = trainable.optimizer.sharded_state_dict(
            model, is_loading=is_loading, metadata=OPTIMIZER_METADATA
        )
    if with_rng:
        state["rng"] = _rng_state()
    return state


def _stop_results_manager() -> None:
    """megatron-core's checkpoint writer keeps a ``multiprocessing`` manager process (a spawned server and its
    resource tracker) for its results queue for the life of the process. Killed with its actor (a driver ``kill -9``
    ends the Ray session), this process would leave them behind: stop it after each save (the next save starts
    another)."""
    queue = filesystem_async._results_queue
    if queue is not None:
        filesystem_async._results_queue = None
        queue._manager.shutdown()


def _write_atomically(root: str | Path, iteration: int, state: dict) -> Path:
    final = iteration_dir(root, iteration)
    tmp = staging_path(final)
    if dist.get_rank() == 0:
        fresh_staging_dir(final)
    dist.barrier()
    try:
        dist_checkpointing.save(state, str(tmp))
    except CheckpointException as exc:
        # A BaseException: Ray and callers catching Exception would not see it, and its text names a writer thread,
        # not the cause. The pointer was not moved, so the previous checkpoint stays the one a resume loads.
        if dist.get_rank() == 0:
            shutil.rmtree(tmp, ignore_errors=True)  # give the space back
        failure = next(iter(exc.failures.values()))[0]  # (exception, traceback) per failed rank
        cause = " ".join(f"{type(failure).__name__}: {failure}".split())[:300]
        raise CheckpointSaveError(
            f"saving {final.name} under {root} failed (disk full? {shutil.disk_usage(root).free / 2**20:.0f} MiB "
            f"free): {cause}; {POINTER} still names the previous checkpoint"
        ) from exc
    finally:
        _stop_results_manager()
    dist.barrier()
    if dist.get_rank() == 0:
        publish_dir(final)  # the same rollout id saved again (a resumed run): the new one replaces it
        # The pointer moves last: until then a resume loads the previous checkpoint.
        atomic_write(Path(root) / POINTER, "release\n" if iteration == RELEASE else f"{iteration}\n")
    dist.barrier()
    return final


def save_checkpoint(root: str | Path, iteration: int, trainable: Trainable) -> Path:
    """Write model, optimizer, schedule and RNG for ``iteration`` atomically; every rank must call it."""
    with_optimizer = _has_optimizer_state(trainable)
    state = _state(trainable, iteration, is_loading=False, with_optimizer=with_optimizer, with_rng=True)
    return _write_atomically(root, iteration, state)


def save_model_checkpoint(root: str | Path, model: torch.nn.Module) -> Path:
    """Write the weights alone as a release checkpoint (``hf-to-megatron``); every rank must call it."""
    model = unwrap_model(model)
    state = {"model": model.sharded_state_dict(), "iteration": RELEASE, "layout": _layout(), "has_optimizer": False}
    return _write_atomically(root, RELEASE, state)


def load_checkpoint(
    root: str | Path, trainable: Trainable, *, load_optimizer: bool = True, load_rng: bool = True
) -> int | None:
    """Load the newest checkpoint under ``root`` into ``trainable``; its iteration, or ``None`` if there is none.

    What the checkpoint lacks (a release checkpoint has weights only) keeps its fresh state.
    """
    iteration = latest_iteration(root)
    if iteration is None:
        return None
    directory = str(iteration_dir(root, iteration))
    common = dist_checkpointing.load_common_state_dict(directory)
    load_rng = load_rng and common.get("has_rng", False)
    if load_rng and common.get("layout") != _layout():
        logger.warning(
            "checkpoint %s was saved with layout %s, this run is %s: RNG states are not restored",
            directory,
            common.get("layout"),
            _layout(),
        )
        load_rng = False
    # A checkpoint saved before the first optimizer step has a schedule but no optimizer state.
    load_moments = load_optimizer and common.get("has_optimizer", True)
    template = _state(trainable, iteration, is_loading=True, with_optimizer=load_moments, with_rng=load_rng)
    # The distributed optimizer's state loads only without autograd recording the copies.
    with torch.no_grad():
        loaded = dist_checkpointing.load(template, directory)
        unwrap_model(trainable.model).load_state_dict(loaded["model"])
        if load_optimizer and "scheduler" in loaded:  # --no-load-optim: fresh optimizer and schedule (Megatron-LM)
            trainable.scheduler.load_state_dict(loaded["scheduler"])
        if load_moments:
            trainable.optimizer.load_state_dict(loaded["optimizer"])
            _restore_adam_steps(trainable)
    if load_rng:
        _set_rng_state(loaded["rng"])
    return iteration


def load_model_weights(root: str | Path, model: torch.nn.Module, iteration: int | None = None) -> int:
    """Load only the model weights of a checkpoint under ``root`` (a reference or teacher model): ``iteration``'s, or
    the newest; return the iteration loaded."""
    if iteration is None:
        iteration = latest_iteration(root)
        if iteration is None:
            raise FileNotFoundError(f"{root} has no {POINTER}: not a megatron checkpoint directory")
    elif not iteration_dir(root, iteration).is_dir():
        raise FileNotFoundError(f"{root} has no iteration {iteration} ({iteration_dir(root, iteration)})")
    with torch.no_grad():
        model = unwrap_model(model)
        loaded = dist_checkpointing.load({"model": model.sharded_state_dict()}, str(iteration_dir(root, iteration)))
        model.load_state_dict(loaded["model"])
    return iteration
