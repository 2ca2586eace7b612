"""slime.rollout.on_policy_distillation's post-process: the teacher's log-probs of exactly the response tokens."""

import argparse

import pytest

from slime.rollout.on_policy_distillation import post_process_rewards
from slime.types import Sample


def teacher_answer(log_probs: list[float]) -> dict:
    # SGLang's shape: one [log-prob, token id, text] per input token, the first without a log-prob.
    return {"meta_info": {"input_token_logprobs": [[None, 1, None]] + [[lp, 2, None] for lp in log_probs]}}


def test_the_response_tokens_log_probs_become_the_samples_teacher_log_probs():
    # Prompt of 3 tokens, response of 2: the teacher scores tokens 2..5; the response's are the last two.
    sample = Sample(index=0, tokens=[1, 2, 3, 4, 5], response_length=2, reward=teacher_answer([-1.0, -2.0, -3.0, -4.0]))
    raw, rewards = post_process_rewards(argparse.Namespace(), [sample])
    assert sample.teacher_log_probs == [-3.0, -4.0]
    assert raw == rewards == [0.0]


def test_a_reward_that_is_not_a_teachers_answer_is_named():
    sample = Sample(index=4, tokens=[1, 2], response_length=1, reward=1.0)
    with pytest.raises(ValueError, match="sample 4: its reward is not a teacher's /generate answer"):
        post_process_rewards(argparse.Namespace(), [sample])
