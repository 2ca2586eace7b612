"""Turning rows of prompt data into prompt ``Sample``s: the keys, the chat template, and the prompt-length filter.

Semantics follow slime: ``--input-key`` holds the prompt (a string or a list of chat messages), ``--label-key`` the
label, ``--metadata-key`` an object copied into ``Sample.metadata``, and ``--tool-key`` a list of tools (or a JSON
string of one) stored as ``metadata["tools"]`` and passed to the chat template. With ``--apply-chat-template`` the
prompt becomes the templated string (a string prompt is first wrapped as one user message); without it, a prompt
stays as written, list or string.
"""

import json
import logging
from pathlib import Path
from typing import Any

from slime.data.reading import Row, describe_type, read_rows
from slime.errors import ConfigError, DataError
from slime.types import Sample

logger = logging.getLogger(__name__)


def load_tokenizer(path: str | None, needed_by: str) -> Any:
    """``AutoTokenizer.from_pretrained(path)`` (``path`` from ``--hf-checkpoint``); ``needed_by`` names the flag."""
    if path is None:
        raise ConfigError(f"{needed_by} needs a tokenizer: set --hf-checkpoint")
    # A path that cannot be a hub id gets a plain message instead of the hub's "Repo id must be in the form ...".
    if path.startswith(("/", ".", "~")) and not Path(path).expanduser().exists():
        raise ConfigError(f"cannot load a tokenizer from '{path}' (from --hf-checkpoint): no such directory")
    # Imported here: transformers takes seconds to import and only some runs need a tokenizer at load time.
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(path)
    except Exception as exc:  # transformers raises many kinds (OSError, ValueError, hub errors) for a bad directory
        message = " ".join(str(exc).split())
        raise ConfigError(f"cannot load a tokenizer from '{path}' (from --hf-checkpoint): {message}") from None


def load_prompt_samples(
    spec: str,
    *,
    input_key: str = "input",
    label_key: str | None = None,
    metadata_key: str | None = "metadata",
    tool_key: str | None = "tools",
    tokenizer: Any = None,
    apply_chat_template: bool = False,
    apply_chat_template_kwargs: dict[str, Any] | None = None,
    max_prompt_len: int | None = None,
    flag: str = "--prompt-data",
) -> list[Sample]:
    """One prompt ``Sample`` per row of ``spec`` (``file.jsonl``, ``file.parquet``, optionally ``@[start:end]``).

    ``tokenizer`` is needed for ``apply_chat_template`` and ``max_prompt_len``. Prompts longer than
    ``max_prompt_len`` tokens are dropped (and counted in the log); a set in which every prompt is too long is an
    error. ``flag`` names where ``spec`` came from in errors.
    """
    if (apply_chat_template or max_prompt_len is not None) and tokenizer is None:
        raise ValueError("load_prompt_samples needs a tokenizer for apply_chat_template and max_prompt_len")
    if apply_chat_template and not getattr(tokenizer, "chat_template", None):
        source = getattr(tokenizer, "name_or_path", "") or "?"
        raise DataError(
            f"--apply-chat-template: the tokenizer in '{source}' (from --hf-checkpoint) has no chat template"
        )
    rows = read_rows(spec, flag)
    template_kwargs = apply_chat_template_kwargs or {}
    samples = []
    for row in rows:
        prompt = _prompt(row, input_key)
        label = _value(row, label_key, "--label-key") if label_key is not None else None
        metadata = _metadata(row, metadata_key)
        tools = _tools(row, tool_key)
        if tools is not None:
            metadata["tools"] = tools
        if apply_chat_template:
            prompt = _apply_chat_template(row, tokenizer, prompt, tools, template_kwargs)
        samples.append(Sample(prompt=prompt, label=label, metadata=metadata))
    if max_prompt_len is not None:
        samples = drop_long_prompts(samples, tokenizer, max_prompt_len, spec)
    return samples


def drop_long_prompts(samples: list[Sample], tokenizer: Any, max_prompt_len: int, spec: str) -> list[Sample]:
    """Keep the samples whose prompt has at most ``max_prompt_len`` tokens (``--rollout-max-prompt-len``)."""
    if not all(isinstance(sample.prompt, str) for sample in samples):
        # As in slime: a message list has no token count until a template renders it.
        logger.warning(
            "%s: --rollout-max-prompt-len is not applied to message-list prompts; add --apply-chat-template", spec
        )
        return samples
    # Counted as the rollout will tokenize them: the text alone, no special tokens added.
    token_ids = tokenizer([sample.prompt for sample in samples], add_special_tokens=False)["input_ids"]
    kept = [sample for sample, ids in zip(samples, token_ids, strict=True) if len(ids) <= max_prompt_len]
    if not kept:
        raise DataError(
            f"{spec}: all {len(samples)} prompts are longer than --rollout-max-prompt-len {max_prompt_len} tokens"
        )
    dropped = len(samples) - len(kept)
    if dropped:
        logger.info(
            "%s: dropped %d of %d prompts longer than --rollout-max-prompt-len %d tokens",
            spec,
            dropped,
            len(samples),
            max_prompt_len,
        )
    return kept


def _value(row: Row, key: str, flag: str) -> Any:
    if key not in row.data:
        present = ", ".join(sorted(row.data)) or "none"
        raise DataError(f"{row.where}: no key '{key}' (from {flag}); keys present: {present}")
    return row.data[key]


def _prompt(row: Row, key: str) -> str | list[dict[str, Any]]:
    prompt = _value(row, key, "--input-key")
    if isinstance(prompt, str):
        return prompt
    if not isinstance(prompt, list) or not prompt:
        raise DataError(
            f"{row.where}: '{key}' (from --input-key) must be a string or a list of messages, "
            f"got {describe_type(prompt)}"
        )
    for number, message in enumerate(prompt):
        if not isinstance(message, dict) or "role" not in message or "content" not in message:
            raise DataError(
                f"{row.where}: '{key}' (from --input-key) message {number} must be an object with 'role' and 'content'"
            )
    return prompt


def _metadata(row: Row, key: str | None) -> dict[str, Any]:
    if key is None or row.data.get(key) is None:
        return {}
    metadata = row.data[key]
    if not isinstance(metadata, dict):
        raise DataError(f"{row.where}: '{key}' (from --metadata-key) must be an object, got {describe_type(metadata)}")
    return dict(metadata)


def _tools(row: Row, key: str | None) -> list[Any] | None:
    if key is None or row.data.get(key) is None:
        return None
    tools = row.data[key]
    if isinstance(tools, str):  # parquet files often store the tool list as a JSON string
        try:
            tools = json.loads(tools)
        except json.JSONDecodeError as exc:
            raise DataError(
                f"{row.where}: '{key}' (from --tool-key) is a string but not JSON ({exc.msg}: column {exc.colno})"
            ) from None
    if not isinstance(tools, list):
        raise DataError(
            f"{row.where}: '{key}' (from --tool-key) must be a list of tools or a JSON string of one, "
            f"got {describe_type(tools)}"
        )
    return tools


def _apply_chat_template(
    row: Row, tokenizer: Any, prompt: str | list[dict[str, Any]], tools: list[Any] | None, kwargs: dict[str, Any]
) -> str:
    messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else prompt
    try:
        return tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=True, tools=tools, **kwargs
        )
    except Exception as exc:  # a chat template is Jinja code run on this row's data: any failure is about the row
        message = " ".join(str(exc).split())
        raise DataError(f"{row.where}: --apply-chat-template failed ({type(exc).__name__}: {message})") from None
