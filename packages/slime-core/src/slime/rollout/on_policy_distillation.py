"""slime's ``slime.rollout.on_policy_distillation``: an SGLang server as the on-policy distillation teacher.

    --use-opd --opd-type sglang --rm-url http://TEACHER/generate
    --custom-rm-path slime.rollout.on_policy_distillation.reward_func
    --custom-reward-post-process-path slime.rollout.on_policy_distillation.post_process_rewards

``reward_func`` asks the teacher for its log-prob of every token of the student's sample (prompt + response, no new
token); ``post_process_rewards`` keeps the response's and stores them in ``Sample.teacher_log_probs``, and gives
every sample a task reward of 0, as slime does: the learning signal is OPD's reverse KL in the advantages
(``slime.rl.opd``). For a task reward as well, write a post-process function that returns it.
"""

import argparse
from typing import Any

from slime.types import Sample
from slime.utils.http_utils import post


async def reward_func(args: argparse.Namespace, sample: Sample, **kwargs: Any) -> dict[str, Any]:
    """The teacher's ``/generate`` answer for ``sample``'s tokens, with their log-probs from the first token on."""
    payload = {
        "input_ids": list(sample.tokens),
        "sampling_params": {"temperature": args.rollout_temperature, "max_new_tokens": 0, "skip_special_tokens": False},
        "return_logprob": True,
        "logprob_start_len": 0,
    }
    return await post(args.rm_url, payload)


def post_process_rewards(args: argparse.Namespace, samples: list[Sample], **kwargs: Any) -> tuple[list, list]:
    """Each sample's teacher log-probs of its response tokens (from ``reward_func``'s answer) into
    ``Sample.teacher_log_probs``; raw and post-processed rewards both 0."""
    for sample in samples:
        answer = sample.reward
        if not isinstance(answer, dict) or "input_token_logprobs" not in answer.get("meta_info", {}):
            raise ValueError(
                f"sample {sample.index}: its reward is not a teacher's /generate answer with input_token_logprobs "
                "(set --custom-rm-path slime.rollout.on_policy_distillation.reward_func)"
            )
        # One [log-prob, token id, text] per input token; the first token has no log-prob (None).
        per_token = [entry[0] for entry in answer["meta_info"]["input_token_logprobs"][1:]]
        sample.teacher_log_probs = [float(lp) for lp in per_token[len(per_token) - sample.response_length :]]
    zeros = [0.0] * len(samples)
    return zeros, list(zeros)
