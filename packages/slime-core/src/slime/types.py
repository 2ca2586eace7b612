"""The data that flows between stages: ``Sample`` (data loading -> rollout -> reward -> filtering) and ``TrainBatch``
(one rollout's samples as the trainer consumes them, per-token fields in ``RaggedArray``s)."""

import base64
from array import array
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, fields
from enum import Enum
from typing import Any, ClassVar

import numpy as np


class Status(Enum):
    PENDING = "pending"
    COMPLETED = "completed"
    TRUNCATED = "truncated"
    ABORTED = "aborted"
    FAILED = "failed"


# How an engine's finish reason maps onto a sample's status.
FINISH_REASON_STATUS = {
    "stop": Status.COMPLETED,
    "length": Status.TRUNCATED,
    "abort": Status.ABORTED,
}


@dataclass
class Sample:
    """One prompt and (once generated) one response, with everything training needs.

    ``tokens`` holds prompt and response ids; the last ``response_length`` of them are the response, and
    ``loss_mask`` and ``rollout_log_probs`` (when present) have exactly ``response_length`` entries.
    """

    Status: ClassVar[type[Status]] = Status  # slime's spelling: ``Sample.Status.COMPLETED``

    group_index: int | None = None
    index: int | None = None
    rollout_id: int | None = None
    prompt: str | list[dict[str, Any]] = ""
    tokens: list[int] = field(default_factory=list)
    response: str = ""
    response_length: int = 0
    label: Any = None
    reward: float | dict[str, Any] | None = None
    loss_mask: list[int] | None = None
    weight_versions: list[str] = field(default_factory=list)
    rollout_log_probs: list[float] | None = None
    # The experts the engine's router chose (--use-rollout-routing-replay): int32 [len(tokens) - 1, layers x top-k],
    # row t for token t (the last token is never fed to the model).
    rollout_routed_experts: np.ndarray | None = None
    # On-policy distillation with an SGLang teacher: the teacher's log-prob of each response token.
    teacher_log_probs: list[float] | None = None
    remove_sample: bool = False
    status: Status = Status.PENDING
    metadata: dict[str, Any] = field(default_factory=dict)
    train_metadata: dict[str, Any] | None = None
    generate_function_path: str | None = None
    custom_rm_path: str | None = None

    @property
    def prompt_length(self) -> int:
        return len(self.tokens) - self.response_length

    @property
    def effective_response_length(self) -> int:
        """Response tokens that train (tool and observation tokens carry mask 0)."""
        return sum(self.loss_mask) if self.loss_mask is not None else self.response_length

    def append_response_tokens(
        self,
        args: Any = None,
        *,
        tokens: Sequence[int],
        log_probs: Sequence[float] | None = None,
        trainable: bool = True,
        meta_info: dict[str, Any] | None = None,
        text: str = "",
    ) -> None:
        """Append response tokens, keeping ``tokens``, ``loss_mask`` and ``rollout_log_probs`` aligned (slime's
        signature; ``args`` is unused here and kept so slime's calls run unchanged).

        Model tokens (``trainable``) need their log-probs; tool or environment tokens get mask 0 and log-prob 0.0.
        ``meta_info``, an SGLang ``/generate`` response's, sets the status from its finish reason and records its
        weight version.
        """
        tokens = list(tokens)
        if trainable:
            if log_probs is None or len(log_probs) != len(tokens):
                got = "none" if log_probs is None else len(log_probs)
                raise ValueError(f"{len(tokens)} trainable tokens need as many log-probs, got {got}")
        elif log_probs is not None and len(log_probs) != len(tokens):
            raise ValueError(f"{len(tokens)} tokens but {len(log_probs)} log-probs")
        if self.loss_mask is None:
            self.loss_mask = [1] * self.response_length
        if self.rollout_log_probs is None:
            self.rollout_log_probs = [0.0] * self.response_length
        self.tokens.extend(tokens)
        self.response_length += len(tokens)
        self.loss_mask.extend([1 if trainable else 0] * len(tokens))
        self.rollout_log_probs.extend(log_probs if log_probs is not None else [0.0] * len(tokens))
        self.response += text
        if meta_info:
            if meta_info.get("routed_experts") is not None:
                self.rollout_routed_experts = routed_experts_of(meta_info["routed_experts"], len(self.tokens) - 1)
            if meta_info.get("weight_version") is not None:
                self.weight_versions.append(str(meta_info["weight_version"]))
            if "finish_reason" in meta_info:
                self.set_finish_reason(meta_info["finish_reason"]["type"])

    def set_finish_reason(self, finish_reason: str) -> None:
        if finish_reason not in FINISH_REASON_STATUS:
            raise ValueError(f"unknown finish reason {finish_reason!r}; expected one of {sorted(FINISH_REASON_STATUS)}")
        self.status = FINISH_REASON_STATUS[finish_reason]

    def get_reward_value(self, reward_key: Any = None) -> float:
        """The scalar reward: ``reward[reward_key]`` for dict rewards (``--reward-key``), else the reward itself.

        What training, the dynamic-sampling filter and the metrics all read, so they agree on a sample's reward.
        slime's form, ``get_reward_value(args)``, reads ``args.reward_key``.
        """
        if reward_key is not None and not isinstance(reward_key, str):
            reward_key = reward_key.reward_key
        reward = self.reward
        if isinstance(reward, dict):
            if reward_key is None:
                raise ValueError(f"sample {self.index} has a dict reward {sorted(reward)}; set --reward-key")
            if reward_key not in reward:
                raise ValueError(f"sample {self.index} has a dict reward {sorted(reward)} without key {reward_key!r}")
            reward = reward[reward_key]
        if reward is None:
            raise ValueError(f"sample {self.index} (group {self.group_index}) has no reward")
        return float(reward)  # a dict reward's entry may be a bool or an int (dapo's "acc")

    def to_dict(self) -> dict[str, Any]:
        # The field names are computed once (_FIELD_NAMES): dataclasses.fields() per call was most of the cost of
        # converting a 10k-sample rollout (bench/scale.py).
        data = {name: getattr(self, name) for name in _FIELD_NAMES}
        data["status"] = self.status.value
        if self.rollout_routed_experts is not None:
            data["rollout_routed_experts"] = self.rollout_routed_experts.tolist()
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Sample":
        unknown = sorted(set(data) - _FIELD_NAME_SET)
        if unknown:
            raise ValueError(f"unknown Sample fields: {', '.join(unknown)}")
        values = dict(data)
        if "status" in values:
            values["status"] = Status(values["status"])
        if values.get("rollout_routed_experts") is not None:
            values["rollout_routed_experts"] = np.asarray(values["rollout_routed_experts"], dtype=np.int32)
        return cls(**values)


def routed_experts_of(encoded: str | list, num_rows: int) -> np.ndarray:
    """SGLang's ``meta_info["routed_experts"]`` (base64 of int32, or nested lists) as ``[num_rows, layers x top-k]``:
    one row per token the engine ran, the prompt's included."""
    if isinstance(encoded, str):
        values = np.frombuffer(base64.b64decode(encoded), dtype=np.int32)
    else:
        values = np.asarray(encoded, dtype=np.int32).reshape(-1)
    if num_rows < 1 or values.size % num_rows:
        raise ValueError(f"the engine's routed experts ({values.size} ids) do not split into {num_rows} token rows")
    return values.reshape(num_rows, -1)


_FIELD_NAMES = tuple(f.name for f in fields(Sample))
_FIELD_NAME_SET = frozenset(_FIELD_NAMES)


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
    # Per sample, the newest trainer weight version that generated it ("" if unknown, e.g. SGLang's "default").
    weight_versions: list[str] = field(default_factory=list)
    # Per sample, the engine's experts per token (Sample.rollout_routed_experts), with --use-rollout-routing-replay.
    rollout_routed_experts: list[np.ndarray] | None = None
    # Per sample, an SGLang teacher's log-probs of the response tokens (--use-opd --opd-type sglang).
    teacher_log_probs: Sequence[Sequence[float]] | None = None

    def __len__(self) -> int:
        return len(self.tokens)
