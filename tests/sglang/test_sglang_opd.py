"""On-policy distillation with an SGLang teacher (slime's ``slime.rollout.on_policy_distillation``): a real engine
scores the student's samples through slime's reward path, and the batch carries its log-probs of the response tokens.
Here the teacher is the engine that generated the samples, so its log-probs must be the engine's own."""

import asyncio

import pytest

from slime.config.arguments import parse_args
from slime.rollout.on_policy_distillation import post_process_rewards
from slime.rollout.reward import compute_reward
from slime.rollout.train_batch import samples_to_train_batch
from slime.types import Sample

pytestmark = pytest.mark.slow

PROMPTS = [[5, 17, 42, 99, 7], [300, 301, 12], [64, 65, 66, 67, 68, 69, 70, 71]]


def test_an_sglang_teacher_scores_the_students_response_tokens(engine, tiny_model) -> None:
    args = parse_args(
        [
            "--hf-checkpoint", str(tiny_model),
            "--use-opd", "--opd-type", "sglang", "--rm-url", engine.engine_urls[0] + "/generate",
            "--custom-rm-path", "slime.rollout.on_policy_distillation.reward_func",
            "--custom-reward-post-process-path", "slime.rollout.on_policy_distillation.post_process_rewards",
            "--rollout-temperature", "1.0",
        ]
    )  # fmt: skip
    params = {"temperature": 1.0, "max_new_tokens": 6, "ignore_eos": True}

    async def rollout() -> list[Sample]:
        samples = await asyncio.gather(
            *(engine.generate(Sample(tokens=p, index=i), params) for i, p in enumerate(PROMPTS))
        )
        await asyncio.gather(*(compute_reward(args, sample) for sample in samples))
        return samples

    samples = asyncio.run(rollout())
    raw, rewards = post_process_rewards(args, samples)  # samples_to_train_batch runs it too (the flag)
    assert raw == rewards == [0.0] * len(samples)  # pure distillation, as in slime
    for sample in samples:
        assert len(sample.teacher_log_probs) == sample.response_length == 6
        assert sample.teacher_log_probs == pytest.approx(sample.rollout_log_probs, abs=1e-4)

    batch = samples_to_train_batch(args, samples)
    for carried, sample in zip(batch.teacher_log_probs, samples, strict=True):
        assert carried.tolist() == pytest.approx(sample.teacher_log_probs)

    # Without the post-process (which sets them from the teacher's answers), a sample without them is named.
    args.custom_reward_post_process_path = None
    for sample in samples:
        sample.reward = 0.0
    samples[1].teacher_log_probs = None
    with pytest.raises(ValueError, match="sample 1 needs one teacher log-prob per response token"):
        samples_to_train_batch(args, samples)
