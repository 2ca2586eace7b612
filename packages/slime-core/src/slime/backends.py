"""What core expects of a train backend and a rollout backend (DESIGN §5).

Backends implement these protocols in their own packages and register the class through
``slime_register_train_backends`` / ``slime_register_rollout_backends``; core never imports a backend.
"""

import argparse
from array import array
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch

from slime.types import Sample


@dataclass(frozen=True, eq=False)
class RaggedArray(Sequence):
    """Sequences of different lengths end to end in one numpy array; item ``i`` is sequence ``i`` (a view).

    A rollout's per-token data (~10^8 values at 100k samples) as one array per field: Ray ships a numpy array as
    one out-of-band buffer and a train actor reads it in place, where lists (or one array per sample) are pickled
    and unpickled object by object (bench/scale.py and docs/benchmarks.md: 100k samples).
    """

    values: np.ndarray
    offsets: np.ndarray  # len(self) + 1 entries: sequence i is values[offsets[i]:offsets[i + 1]]

    @classmethod
    def from_lists(cls, sequences: Iterable[Sequence[Any]], typecode: str) -> "RaggedArray":
        """``typecode`` as ``array.array``'s ("i": int32, "b": int8, "f": float32)."""
        flat = array(typecode)
        ends = [0]
        for sequence in sequences:
            flat.fromlist(sequence if isinstance(sequence, list) else list(sequence))  # fromlist: ~18 ns a value
            ends.append(len(flat))
        return cls(np.asarray(flat), np.asarray(ends, dtype=np.int64))

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, index: int) -> np.ndarray:  # type: ignore[override]
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} sequences")
        index %= len(self)
        return self.values[self.offsets[index] : self.offsets[index + 1]]


@dataclass
class TrainBatch:
    """One rollout's samples, as the trainer needs them. Lists are per sample, in sample order.

    ``tokens[i]`` is prompt + response; the last ``response_lengths[i]`` tokens are the response, and
    ``loss_masks[i]`` / ``rollout_log_probs[i]`` cover exactly those response tokens. ``samples_to_train_batch``
    stores the per-token fields as ``RaggedArray``s (item ``i`` a numpy array); ``torch.tensor`` reads an item as
    it reads a list, so a backend indexes them the same either way.
    """

    tokens: Sequence[Sequence[int]]
    response_lengths: list[int]
    loss_masks: Sequence[Sequence[int]]
    rewards: list[float]  # after post-processing (group normalisation), what advantages are built from
    raw_rewards: list[float]
    truncated: list[bool]
    sample_indices: list[int]
    rollout_log_probs: Sequence[Sequence[float]] | None = None
    metadata: list[dict[str, Any]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.tokens)


class TrainBackend(Protocol):
    """Runs inside one Ray actor per training rank."""

    def init(self, args: argparse.Namespace, rank: int, world_size: int) -> int:
        """Build the model (and the reference model a KL term needs), load ``--load``; return the start rollout id."""

    def train(self, rollout_id: int, batch: TrainBatch) -> list[dict[str, float]]:
        """Log-probs, advantages, optimizer steps on one rollout; return the ``train/*`` metrics of each step.

        Every rank receives the whole rollout and takes its own data-parallel share.
        """

    def rollout_metrics(self) -> dict[str, float]:
        """What the last ``train`` call measured for its rollout, by full name, logged at ``rollout/step``: its
        ``perf/*`` (log-prob and train times, tokens/s, TFLOPs) and the ``rollout/*`` means of its training data
        (``rollout/log_probs``, ``rollout/advantages``, ...; ``slime.metrics.rollout.train_data_means``). May be
        empty; the same on every rank."""

    def save(self, rollout_id: int) -> None:
        """Write a checkpoint atomically (the latest-iteration pointer last)."""

    def update_weights(self, receiver: "WeightReceiver", weight_version: str) -> None:
        """Send the current weights, under HF names and layouts, through the rollout engine's receiver."""

    def offload(self) -> None: ...

    def onload(self) -> None: ...


class WeightReceiver(Protocol):
    """The rollout engine's side of a weight update, used from the trainer's process (so it must be picklable).

    The rollout backend makes it (``RolloutEngine.weight_receiver``) and decides the transport (a distributed
    group, disk, or tensors); the train backend only hands it HF-named tensors. Neither imports the other.
    """

    def update_weights(self, named_tensors: Iterable[tuple[str, torch.Tensor]], weight_version: str) -> None: ...


class RolloutEngine(Protocol):
    """N inference engines behind one router, owned by the rollout manager, built as ``engine_class(args)``."""

    def start(self) -> None: ...

    async def generate(self, sample: Sample, sampling_params: dict[str, Any]) -> Sample:
        """Generate (or continue) ``sample``'s response; fill tokens, log-probs, loss mask and status."""

    async def abort(self) -> None:
        """Abort every in-flight request on every engine and wait until they are idle."""

    def weight_receiver(self) -> WeightReceiver: ...

    def weights_updated(self, weight_version: str) -> None:
        """An update through the last ``weight_receiver()`` has reached the engines it covers."""

    def update_weights_from_disk(self, path: str, weight_version: str) -> None: ...

    def release_memory(self) -> None: ...

    def resume_memory(self, tags: list[str] | None = None) -> None: ...

    def health(self) -> list[bool]: ...

    def shutdown(self) -> None: ...
