"""Eval datasets: their settings (each with its own n, sampling and reward) and their prompts.

Datasets come from ``--eval-prompt-data name1 path1 ...`` or ``--eval-config FILE.yaml``::

    eval:
      defaults: {max_response_len: 512, top_p: 0.7}
      datasets:
        - {name: aime, path: data/aime.jsonl, n_samples_per_eval_prompt: 16, rm_type: deepscaler}
        - {name: gsm8k, path: data/gsm8k.parquet, input_key: messages, n_samples_per_eval_prompt: 1}

Each setting resolves as slime does: the dataset's entry, then ``eval.defaults``, then the ``--eval-*`` flag, then
the ``--rollout-*`` flag.
"""

import argparse
import json
from dataclasses import dataclass, fields
from functools import cache
from typing import Any

from slime.config.yaml_file import load_yaml
from slime.data.dataset import load_prompt_samples, load_tokenizer
from slime.errors import ConfigError
from slime.rollout.sampling import engine_sampling_params
from slime.types import Sample


@dataclass(frozen=True)
class EvalDatasetConfig:
    name: str
    path: str
    n_samples_per_eval_prompt: int
    temperature: float
    top_p: float
    top_k: int
    max_response_len: int
    input_key: str
    label_key: str | None
    metadata_key: str | None
    tool_key: str | None
    apply_chat_template: bool
    rm_type: str | None = None
    custom_rm_path: str | None = None
    stop: tuple[str, ...] | None = None
    stop_token_ids: tuple[int, ...] | None = None

    def sampling_params(self, args: argparse.Namespace) -> dict[str, Any]:
        return engine_sampling_params(
            temperature=self.temperature,
            top_p=self.top_p,
            top_k=self.top_k,
            max_new_tokens=self.max_response_len,
            stop=self.stop,
            stop_token_ids=self.stop_token_ids,
            skip_special_tokens=args.rollout_skip_special_tokens,
        )


# Setting name -> (--eval-* flag dest, --rollout-* or general flag dest); None where slime has no such flag.
_FALLBACKS: dict[str, tuple[str | None, str | None]] = {
    "n_samples_per_eval_prompt": ("n_samples_per_eval_prompt", None),
    "temperature": ("eval_temperature", "rollout_temperature"),
    "top_p": ("eval_top_p", "rollout_top_p"),
    "top_k": ("eval_top_k", "rollout_top_k"),
    "max_response_len": ("eval_max_response_len", "rollout_max_response_len"),
    "input_key": ("eval_input_key", "input_key"),
    "label_key": ("eval_label_key", "label_key"),
    "metadata_key": (None, "metadata_key"),
    "tool_key": ("eval_tool_key", "tool_key"),
    "apply_chat_template": (None, "apply_chat_template"),
    "rm_type": (None, "rm_type"),
    "custom_rm_path": (None, "custom_rm_path"),
    "stop": (None, "rollout_stop"),
    "stop_token_ids": (None, "rollout_stop_token_ids"),
}
_KNOWN_KEYS = {f.name for f in fields(EvalDatasetConfig)}


def _resolve(name: str, entry: dict, defaults: dict, args: argparse.Namespace) -> Any:
    if entry.get(name) is not None:
        return entry[name]
    if defaults.get(name) is not None:
        return defaults[name]
    eval_flag, general_flag = _FALLBACKS[name]
    for flag in (eval_flag, general_flag):
        if flag is not None and getattr(args, flag, None) is not None:
            return getattr(args, flag)
    return None


def _dataset_config(entry: dict, defaults: dict, args: argparse.Namespace, where: str) -> EvalDatasetConfig:
    unknown = sorted(set(entry) - _KNOWN_KEYS)
    if unknown:
        raise ConfigError(f"{where}: unknown key '{unknown[0]}'; known keys: {', '.join(sorted(_KNOWN_KEYS))}")
    for key in ("name", "path"):
        if not entry.get(key):
            raise ConfigError(f"{where}: every dataset needs '{key}'")
    values = {name: _resolve(name, entry, defaults, args) for name in _FALLBACKS}
    if values["max_response_len"] is None:
        raise ConfigError(
            f"eval dataset '{entry['name']}': no max_response_len (set it in the eval config, "
            "--eval-max-response-len or --rollout-max-response-len)"
        )
    for key in ("stop", "stop_token_ids"):
        if values[key] is not None:
            values[key] = tuple(values[key])
    return EvalDatasetConfig(name=entry["name"], path=entry["path"], **values)


def eval_dataset_configs(args: argparse.Namespace) -> list[EvalDatasetConfig]:
    """The eval datasets of ``--eval-prompt-data`` or ``--eval-config``, every setting resolved."""
    if args.eval_prompt_data:
        pairs = args.eval_prompt_data
        entries = [{"name": pairs[i], "path": pairs[i + 1]} for i in range(0, len(pairs), 2)]
        return [_dataset_config(e, {}, args, "--eval-prompt-data") for e in entries]
    if not args.eval_config:
        return []
    path = args.eval_config
    data = load_yaml(path, "--eval-config")
    section = data.get("eval") if isinstance(data, dict) else None
    if not isinstance(section, dict) or not isinstance(section.get("datasets"), list) or not section["datasets"]:
        raise ConfigError(f"{path}: expected 'eval: {{defaults: {{...}}, datasets: [...]}}' with at least one dataset")
    defaults = section.get("defaults") or {}
    unknown = sorted(set(defaults) - _KNOWN_KEYS)
    if unknown:
        raise ConfigError(f"{path}: eval.defaults: unknown key '{unknown[0]}'")
    configs = [
        _dataset_config(entry, defaults, args, f"{path}: eval.datasets[{number}]")
        for number, entry in enumerate(section["datasets"])
    ]
    names = [config.name for config in configs]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ConfigError(f"{path}: eval dataset name '{duplicates[0]}' is used twice")
    return configs


@dataclass
class EvalResult:
    name: str
    n_samples_per_prompt: int  # this dataset's own n: pass@k groups by it
    samples: list[Sample]


@cache
def _prompts(config: EvalDatasetConfig, hf_checkpoint: str | None, template_kwargs: str) -> tuple[Sample, ...]:
    tokenizer = load_tokenizer(hf_checkpoint, "--apply-chat-template") if config.apply_chat_template else None
    samples = load_prompt_samples(
        config.path,
        input_key=config.input_key,
        label_key=config.label_key,
        metadata_key=config.metadata_key,
        tool_key=config.tool_key,
        tokenizer=tokenizer,
        apply_chat_template=config.apply_chat_template,
        apply_chat_template_kwargs=json.loads(template_kwargs),
        flag=f"eval dataset '{config.name}'",
    )
    return tuple(samples)


def eval_prompts(args: argparse.Namespace, config: EvalDatasetConfig) -> tuple[Sample, ...]:
    """One eval dataset's prompts, read once per process."""
    # The template kwargs travel as JSON text so the cache key is hashable.
    return _prompts(config, args.hf_checkpoint, json.dumps(args.apply_chat_template_kwargs or {}, sort_keys=True))
