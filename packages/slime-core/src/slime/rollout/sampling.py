"""Sampling parameters sent to the rollout engine: one dict for rollouts (``--rollout-*``) and eval datasets alike."""

import argparse
from collections.abc import Sequence
from typing import Any

from slime.errors import ConfigError


def engine_sampling_params(
    *,
    temperature: float,
    top_p: float,
    top_k: int,
    max_new_tokens: int,
    stop: Sequence[str] | None,
    stop_token_ids: Sequence[int] | None,
    skip_special_tokens: bool,
) -> dict[str, Any]:
    """The parameters of one generation, under the names the engines take (SGLang's)."""
    return {
        "temperature": temperature,
        "top_p": top_p,
        "top_k": top_k,
        "max_new_tokens": max_new_tokens,
        "stop": list(stop) if stop else None,
        "stop_token_ids": list(stop_token_ids) if stop_token_ids else None,
        "skip_special_tokens": skip_special_tokens,
        # Keep stop strings in the text and no extra spaces, so text and token ids agree (as slime does).
        "no_stop_trim": True,
        "spaces_between_special_tokens": False,
    }


def rollout_sampling_params(args: argparse.Namespace) -> dict[str, Any]:
    if args.rollout_max_response_len is None:
        raise ConfigError("--rollout-max-response-len is required to generate")
    return engine_sampling_params(
        temperature=args.rollout_temperature,
        top_p=args.rollout_top_p,
        top_k=args.rollout_top_k,
        max_new_tokens=args.rollout_max_response_len,
        stop=args.rollout_stop,
        stop_token_ids=args.rollout_stop_token_ids,
        skip_special_tokens=args.rollout_skip_special_tokens,
    )
