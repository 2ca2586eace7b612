"""Sampling parameters sent to the rollout engine, from slime's ``--rollout-*`` flags."""

import argparse
from typing import Any

from slime.errors import ConfigError


def rollout_sampling_params(args: argparse.Namespace) -> dict[str, Any]:
    if args.rollout_max_response_len is None:
        raise ConfigError("--rollout-max-response-len is required to generate")
    return {
        "temperature": args.rollout_temperature,
        "top_p": args.rollout_top_p,
        "top_k": args.rollout_top_k,
        "max_new_tokens": args.rollout_max_response_len,
        "stop": args.rollout_stop,
        "stop_token_ids": args.rollout_stop_token_ids,
        "skip_special_tokens": args.rollout_skip_special_tokens,
        # Keep stop strings in the text and no extra spaces, so text and token ids agree (as slime does).
        "no_stop_trim": True,
        "spaces_between_special_tokens": False,
    }
