"""``MegatronTrainBackend``: slime's ``TrainBackend`` protocol on megatron-core (registered as ``megatron``).

This module stays cheap to import (the plugin registers the class for every ``slime`` command); megatron-core is
imported in ``init``, after CPU mode is switched on where there is no GPU.
"""

import argparse
import contextlib
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from slime.backends import WeightReceiver
from slime.types import TrainBatch
from slime_megatron.roles import role_args

if TYPE_CHECKING:
    from slime_megatron.offload import OffloadedTrainer
    from slime_megatron.trainer import MegatronTrainer


class MegatronTrainBackend:
    """One training rank. Every rank of the job calls each method (they are collective)."""

    def __init__(self) -> None:
        self.trainer: MegatronTrainer | None = None
        # --offload-train on a GPU: the trainer's device memory, in host memory until onload (offload.py).
        self.offloaded: OffloadedTrainer | None = None

    def init(self, args: argparse.Namespace, rank: int, world_size: int, role: str = "actor") -> int:
        """Join the process group (``MASTER_ADDR``/``MASTER_PORT``), build the model (the policy, or PPO's critic for
        ``role="critic"``) with the role's arguments (``--megatron-config-path``), load its checkpoint; the rollout
        after the loaded checkpoint's (0 without one)."""
        import torch

        on_cpu = not torch.cuda.is_available()
        if on_cpu:
            from slime_megatron import cpu_compat

            cpu_compat.enable()
        from slime_megatron.critic import MegatronCritic
        from slime_megatron.trainer import MegatronTrainer

        trainer_class = MegatronCritic if role == "critic" else MegatronTrainer
        self.trainer = trainer_class(role_args(args, role), rank, world_size, on_cpu)
        return self.trainer.start_rollout_id

    def _require_trainer(self) -> "MegatronTrainer":
        if self.trainer is None:
            raise RuntimeError("MegatronTrainBackend.init() has not been called")
        return self.trainer

    def train(
        self, rollout_id: int, batch: TrainBatch, values: Sequence[np.ndarray] | None = None
    ) -> list[dict[str, float]]:
        """Every rank receives the whole rollout and trains on its data-parallel share; metrics without the
        ``train/`` prefix, the same on every rank. ``values``: PPO's critic's, per sample."""
        return self._require_trainer().train(rollout_id, batch, values)

    def train_critic(self, rollout_id: int, batch: TrainBatch) -> tuple[list[dict[str, float]], dict[int, np.ndarray]]:
        """PPO's critic (``init(role="critic")``): train on the rollout; each step's metrics, and the values of the
        samples this rank reports, by position in ``batch`` (every sample is reported by exactly one rank)."""
        from slime_megatron.critic import MegatronCritic

        critic = self._require_trainer()
        if not isinstance(critic, MegatronCritic):
            raise RuntimeError("train_critic() is for a backend initialised with role='critic'")
        return critic.train_critic(rollout_id, batch)

    def rollout_metrics(self) -> dict[str, float]:
        """The last ``train`` call's ``perf/*`` timings and ``rollout/*`` training-data means (at ``rollout/step``)."""
        trainer = self._require_trainer()
        return {**trainer.perf, **trainer.train_data_means}

    def save(self, rollout_id: int) -> None:
        self._require_trainer().save(rollout_id)

    def update_weights(self, receiver: WeightReceiver, weight_version: str) -> None:
        """Gather the weights under HF names and layouts on rank 0, which sends them through ``receiver``."""
        import torch.distributed as dist

        trainer = self._require_trainer()
        with self._weights_on_device():
            state = trainer.hf_state_dict()
            if state is not None:
                receiver.update_weights(state.items(), weight_version)
            dist.barrier()
            trainer.weights_sent(weight_version)

    def _weights_on_device(self) -> contextlib.AbstractContextManager:
        """An offloaded trainer's weights come back to the device while they are sent (the loop updates the engines
        between an offload and the next onload, as slime does)."""
        if self.offloaded is None:
            return contextlib.nullcontext()
        return self.offloaded.weights_on_device()

    def offload(self) -> None:
        """``--offload-train``: weights, gradients and optimizer state to host memory (``offload.py``); nothing to
        free on CPU."""
        trainer = self._require_trainer()
        if not trainer.on_cpu and self.offloaded is None:
            from slime_megatron.offload import OffloadedTrainer

            self.offloaded = OffloadedTrainer(trainer.trainable)

    def onload(self) -> None:
        if self.offloaded is not None:
            self.offloaded.restore()
            self.offloaded = None
