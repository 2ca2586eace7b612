"""Seeded sampling on CPU (--sglang-enable-deterministic-inference): one seed per sample, so a sample draws the same
tokens alone or in any batch, and a rerun of the same run samples the same answers."""

import asyncio
import random

import pytest

from slime.config.arguments import parse_args
from slime.types import Sample

pytestmark = pytest.mark.slow

SAMPLED = {"temperature": 1.0, "top_p": 1.0, "top_k": -1, "ignore_eos": True, "max_new_tokens": 10}


def generate_all(engine, samples: list[Sample]) -> list[list[int]]:
    async def run():
        return await asyncio.gather(*(engine.generate(s, SAMPLED) for s in samples))

    return [sample.tokens for sample in asyncio.run(run())]


def test_a_sample_draws_the_same_tokens_alone_and_in_a_batch(ray_runtime, tiny_model, tmp_path):
    from slime_sglang.engine import SGLangRolloutEngine

    args = parse_args(
        [
            "--hf-checkpoint", str(tiny_model), "--rollout-num-gpus", "1", "--output-dir", str(tmp_path),
            "--sglang-device", "cpu", "--sglang-enable-deterministic-inference", "--rollout-seed", "7",
            "--sglang-server-start-timeout", "400",
        ]
    )  # fmt: skip
    rng = random.Random(0)
    prompt = [rng.randrange(3, 500) for _ in range(8)]
    others = [[rng.randrange(3, 500) for _ in range(rng.randrange(3, 20))] for _ in range(15)]
    engine = SGLangRolloutEngine(args)
    engine.start()
    try:
        alone = generate_all(engine, [Sample(index=3, tokens=list(prompt))])[0]
        batch = generate_all(
            engine,
            [Sample(index=3, tokens=list(prompt))] + [Sample(index=100 + i, tokens=p) for i, p in enumerate(others)],
        )
        same_prompt = generate_all(engine, [Sample(index=i, tokens=list(prompt)) for i in range(8)])
    finally:
        engine.shutdown()
    assert batch[0] == alone
    assert same_prompt[3] == alone  # the seed is --rollout-seed + the sample's index ...
    assert len({tuple(tokens) for tokens in same_prompt}) > 1  # ... so a group's samples still differ
