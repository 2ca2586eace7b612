"""What core expects of a train backend and a rollout backend (DESIGN §5).

Backends implement these protocols in their own packages and register the class through
``slime_register_train_backends`` / ``slime_register_rollout_backends``; core never imports a backend.

A backend's package may also ship slime's own import paths below ``slime.backends``, so that code written for slime
imports unchanged (slime-megatron ships ``slime.backends.megatron_utils``); ``__path__`` below finds them.
"""

import argparse
import os
import sys
from collections.abc import Iterable
from typing import Any, Protocol

import torch

from slime.types import Sample, TrainBatch


def _with_other_packages_portions(path: list[str]) -> list[str]:
    """``path`` and every other ``slime/backends`` directory on ``sys.path``.

    Installed wheels put other packages' ``slime.backends.*`` in this very directory, but an editable install (the
    uv workspace) leaves them in each package's own ``src/``. The current directory (``''`` on ``sys.path``) is
    skipped, so that a checkout of slime itself there cannot shadow what is installed.
    """
    found = list(path)
    seen = {os.path.realpath(directory) for directory in found}
    for entry in sys.path:
        directory = os.path.join(entry, "slime", "backends")
        if entry and os.path.isdir(directory) and os.path.realpath(directory) not in seen:
            found.append(directory)
            seen.add(os.path.realpath(directory))
    return found


__path__ = _with_other_packages_portions(__path__)


class TrainBackend(Protocol):
    """Runs inside one Ray actor per training rank."""

    def init(self, args: argparse.Namespace, rank: int, world_size: int) -> int:
        """Build the model (and the reference model a KL term needs), load ``--load``; return the rollout id after
        the loaded checkpoint's (0 without one). The loop, not the backend, applies ``--start-rollout-id``.

        A backend that can train PPO's critic also takes ``role="critic"`` (the loop passes it only for the critic's
        group) and has ``train_critic``; the loop calls ``train`` with the critic's ``values`` then."""

    def train(self, rollout_id: int, batch: TrainBatch) -> list[dict[str, float]]:
        """Log-probs, advantages, optimizer steps on one rollout; return the ``train/*`` metrics of each step.

        Every rank receives the whole rollout and takes its own data-parallel share.
        """

    # Optional, for --advantage-estimator ppo (preflight refuses PPO for a backend without it):
    #   train_critic(rollout_id, batch) -> (each step's metrics, {sample position: values of its response tokens})
    # on a backend initialised with role="critic"; each sample's values come from exactly one rank.

    def rollout_metrics(self) -> dict[str, float]:
        """What the last ``train`` call measured for its rollout, by full name, logged at ``rollout/step``: its
        ``perf/*`` (log-prob and train times, tokens/s, TFLOPs) and the ``rollout/*`` means of its training data
        (``rollout/log_probs``, ``rollout/advantages``, ...; ``slime.metrics.rollout.train_data_means``). May be
        empty; the same on every rank."""

    def save(self, rollout_id: int) -> None:
        """Write a checkpoint atomically (the latest-iteration pointer last)."""

    def update_weights(self, receiver: "WeightReceiver", weight_version: str) -> None:
        """Send the current weights, under HF names and layouts, through the rollout engine's receiver."""

    def offload(self) -> None:
        """After training under ``--offload-train`` (``--colocate``): free the devices for the rollout engines."""

    def onload(self) -> None:
        """Before training under ``--offload-train``: take the devices back."""


class WeightReceiver(Protocol):
    """The rollout engine's side of a weight update, used from the trainer's process (so it must be picklable).

    The rollout backend makes it (``RolloutEngine.weight_receiver``) and decides the transport (a distributed
    group, disk, or tensors); the train backend only hands it HF-named tensors. Neither imports the other.

    It may also have ``close()``: the train actor calls it (on the last receiver it used) just before it exits, to
    release what the updates hold in its process, such as shared memory.
    """

    def update_weights(self, named_tensors: Iterable[tuple[str, torch.Tensor]], weight_version: str) -> None: ...


class RolloutEngine(Protocol):
    """N inference engines behind one router, owned by the rollout manager, built as ``engine_class(args, placer)``.

    ``placer`` (``slime.ray.engine_placement.EnginePlacer``) starts one actor per engine in that engine's own bundles
    and restarts it there; the backend's actor class says what runs inside (its server, on that node and devices).
    """

    weight_version: str | None  # the version of the weights the engines serve (the last update's); None before one

    def start(self) -> None: ...

    async def generate(self, sample: Sample, sampling_params: dict[str, Any]) -> Sample:
        """Generate (or continue) ``sample``'s response; fill tokens, log-probs, loss mask and status."""

    # Optional: generate_group(samples, sampling_params) -> samples: fresh responses for samples that share one
    # prompt, as one request where the engine can (its prefill done once). The rollout uses it for groups of the
    # default generate function unless --rollout-per-sample-requests.

    async def abort(self) -> None:
        """Abort every in-flight request on every engine and wait until they are idle."""

    def weight_receiver(self) -> WeightReceiver: ...

    def weights_updated(self, weight_version: str) -> None:
        """An update through the last ``weight_receiver()`` has reached the engines it covers."""

    def update_weights_from_disk(self, path: str, weight_version: str) -> None: ...

    def release_memory(self) -> None:
        """After generation under ``--offload-rollout`` (``--colocate``): give the devices to the trainer."""

    def resume_memory(self, tags: list[str] | None = None) -> None:
        """Take back what ``release_memory`` gave: all of it, or ``["weights"]`` before an update and
        ``["kv_cache"]`` after it."""

    def shutdown(self) -> None: ...
