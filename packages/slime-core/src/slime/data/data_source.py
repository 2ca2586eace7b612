"""slime's default data source: groups of prompt samples, epoch after epoch, after a buffer of partial groups.

The position (epoch, offset in the epoch, next group and sample index), the buffer and a free ``metadata`` dict are
saved as JSON, never pickled, so a resumed run continues with exactly the next prompt and keeps its partial groups.
"""

import argparse
import copy
import json
import logging
import random
from pathlib import Path
from typing import Any

from slime.data.dataset import load_prompt_samples, load_tokenizer
from slime.errors import ConfigError, DataError
from slime.files import atomic_write
from slime.plugins import load_object
from slime.types import Sample

logger = logging.getLogger(__name__)

_POSITION_KEYS = ("epoch_id", "sample_offset", "sample_group_index", "sample_index")


def epoch_order(num_prompts: int, seed: int, epoch_id: int) -> list[int]:
    """The prompt order of one shuffled epoch: slime's permutation, ``random.seed(seed + epoch_id)`` then shuffle."""
    order = list(range(num_prompts))
    random.Random(seed + epoch_id).shuffle(order)
    return order


def pop_first(args: argparse.Namespace, rollout_id: int | None, buffer: list[list[Sample]], num_groups: int):
    """The default buffer filter (``--buffer-filter-path``): take up to ``num_groups`` groups from the front."""
    taken = buffer[:num_groups]
    del buffer[:num_groups]
    return taken


def load_train_prompts(args: argparse.Namespace) -> list[Sample]:
    """The prompts of ``--prompt-data`` as the flags describe them (keys, chat template, prompt-length filter).

    The default data source loads through this, and ``slime train`` calls it before a run starts, so a bad file
    ends in one line before Ray, engines or the output directory are touched.
    """
    if args.prompt_data is None:
        raise ConfigError("the default data source needs --prompt-data")
    kwargs = args.apply_chat_template_kwargs
    if isinstance(kwargs, str):  # accept the raw JSON text too, as slime's flag takes it
        try:
            kwargs = json.loads(kwargs)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"--apply-chat-template-kwargs: invalid JSON ({exc.msg})") from None
    tokenizer = None
    if args.apply_chat_template or args.rollout_max_prompt_len is not None:
        needed_by = "--apply-chat-template" if args.apply_chat_template else "--rollout-max-prompt-len"
        tokenizer = load_tokenizer(args.hf_checkpoint, needed_by)
    return load_prompt_samples(
        args.prompt_data,
        input_key=args.input_key,
        label_key=args.label_key,
        metadata_key=args.metadata_key,
        tool_key=args.tool_key,
        tokenizer=tokenizer,
        apply_chat_template=args.apply_chat_template,
        apply_chat_template_kwargs=kwargs,
        max_prompt_len=args.rollout_max_prompt_len,
    )


class RolloutDataSource:
    """Prompts from ``--prompt-data`` as groups of ``--n-samples-per-prompt`` samples, with a buffer in front.

    This is slime's ``RolloutDataSourceWithBuffer``: ``get_samples`` first takes groups from ``buffer`` (partial
    groups a rollout handed back through ``add_samples``), then new prompts in order, wrapping into a new epoch at
    the end of the data (reshuffled when ``--rollout-shuffle``). ``len()`` is the number of prompts per epoch.
    """

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.n_samples_per_prompt: int = args.n_samples_per_prompt
        self.shuffle: bool = args.rollout_shuffle
        self.seed: int = args.rollout_seed
        self.prompts: list[Sample] = load_train_prompts(args)
        filter_path = getattr(args, "buffer_filter_path", None)
        self.buffer_filter = load_object(filter_path, "--buffer-filter-path") if filter_path else pop_first
        self.buffer: list[list[Sample]] = []
        self.metadata: dict[str, Any] = {}  # free for rollout functions; saved and restored with the position
        self.epoch_id = 0
        self.sample_offset = 0  # prompts of the current epoch already handed out
        self.sample_group_index = 0
        self.sample_index = 0
        self._epoch_prompts = self._order_epoch(self.epoch_id)

    def __len__(self) -> int:
        return len(self.prompts)

    def get_samples(self, num_groups: int) -> list[list[Sample]]:
        """``num_groups`` groups: buffered ones first, then fresh prompts, each as independent sample copies."""
        groups: list[list[Sample]] = []
        if self.buffer and num_groups > 0:
            groups = list(self.buffer_filter(self.args, None, self.buffer, num_groups))
            if len(groups) > num_groups:
                raise ValueError(f"the buffer filter returned {len(groups)} groups, more than the {num_groups} asked")
        while len(groups) < num_groups:
            groups.append(self._next_group())
        return groups

    def add_samples(self, groups: list[list[Sample]]) -> None:
        """Put groups back (partial rollouts, aborted groups); each must hold ``n_samples_per_prompt`` samples."""
        for number, group in enumerate(groups):
            if not isinstance(group, list):
                raise TypeError(f"add_samples: group {number} is a {type(group).__name__}, not a list of Sample")
            if len(group) != self.n_samples_per_prompt:
                raise ValueError(
                    f"add_samples: group {number} has {len(group)} samples; "
                    f"each group needs --n-samples-per-prompt {self.n_samples_per_prompt}"
                )
        self.buffer.extend(groups)

    def _next_group(self) -> list[Sample]:
        if self.sample_offset >= len(self._epoch_prompts):  # ">=": a resumed state may point past a shrunk dataset
            self.epoch_id += 1
            self.sample_offset = 0
            self._epoch_prompts = self._order_epoch(self.epoch_id)
        prompt = self._epoch_prompts[self.sample_offset]
        self.sample_offset += 1
        group = []
        for _ in range(self.n_samples_per_prompt):
            sample = copy.deepcopy(prompt)  # each sample of a group gets its own response, tokens and metadata
            sample.group_index = self.sample_group_index
            sample.index = self.sample_index
            self.sample_index += 1
            group.append(sample)
        self.sample_group_index += 1
        return group

    def _order_epoch(self, epoch_id: int) -> list[Sample]:
        if not self.shuffle:
            return self.prompts
        return [self.prompts[i] for i in epoch_order(len(self.prompts), self.seed, epoch_id)]

    # --- resume ---------------------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """The position, the buffer (as ``Sample.to_dict``) and ``metadata``: plain JSON-ready values."""
        return {
            "epoch_id": self.epoch_id,
            "sample_offset": self.sample_offset,
            "sample_group_index": self.sample_group_index,
            "sample_index": self.sample_index,
            "num_prompts": len(self),
            "metadata": copy.deepcopy(self.metadata),
            "buffer": [[copy.deepcopy(sample.to_dict()) for sample in group] for group in self.buffer],
        }

    def load_state_dict(self, state: dict[str, Any], where: str = "data source state") -> None:
        """Continue from ``state`` (from ``state_dict``); ``where`` names its source in errors."""
        if not isinstance(state, dict):
            raise DataError(f"{where}: expected a JSON object, got {type(state).__name__}")
        missing = [key for key in _POSITION_KEYS if key not in state]
        if missing:
            raise DataError(f"{where}: missing keys {', '.join(missing)}")
        for key in _POSITION_KEYS:
            value = state[key]
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise DataError(f"{where}: '{key}' must be a non-negative integer, got {value!r}")
        buffer = []
        for number, group in enumerate(state.get("buffer", [])):
            try:
                buffer.append([Sample.from_dict(sample) for sample in group])
            except (TypeError, ValueError) as exc:
                raise DataError(f"{where}: buffer group {number}: {exc}") from None
            if len(buffer[-1]) != self.n_samples_per_prompt:
                raise DataError(
                    f"{where}: buffer group {number} has {len(buffer[-1])} samples, "
                    f"but --n-samples-per-prompt is {self.n_samples_per_prompt}"
                )
        if state.get("num_prompts", len(self)) != len(self):
            logger.warning(
                "%s was saved with %d prompts per epoch, but the data now has %d: the position may not match",
                where,
                state["num_prompts"],
                len(self),
            )
        self.epoch_id = state["epoch_id"]
        self.sample_offset = state["sample_offset"]
        self.sample_group_index = state["sample_group_index"]
        self.sample_index = state["sample_index"]
        self.metadata = dict(state.get("metadata") or {})
        self.buffer = buffer
        self._epoch_prompts = self._order_epoch(self.epoch_id)

    def save(self, path: str | Path, state: dict[str, Any] | None = None) -> None:
        """Write ``state`` (default: ``state_dict()`` now) as JSON to ``path``, atomically: a crash leaves the old
        file or the new one."""
        path = Path(path)
        try:
            text = json.dumps(self.state_dict() if state is None else state)
        except (TypeError, ValueError) as exc:
            raise DataError(f"cannot save the data source state to {path}: {exc} (metadata must be JSON)") from None
        atomic_write(path, text)

    def load(self, path: str | Path) -> None:
        """Continue from a state written by ``save``."""
        path = Path(path)
        if not path.is_file():
            raise DataError(f"{path}: no such data source state file")
        try:
            state = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise DataError(f"{path}: not a data source state (invalid JSON: {exc})") from None
        self.load_state_dict(state, where=str(path))
