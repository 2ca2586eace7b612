"""Generation through the real router and real CPU engines matches HF transformers token for token."""

import asyncio
import random
import re

import pytest
import torch

from slime.types import Sample, Status

pytestmark = pytest.mark.slow

GREEDY = {"temperature": 0.0, "top_p": 1.0, "top_k": -1, "ignore_eos": True}


def prompts(count: int, seed: int = 0) -> list[list[int]]:
    rng = random.Random(seed)
    return [[rng.randrange(3, 500) for _ in range(rng.randrange(3, 20))] for _ in range(count)]


def generate_all(engine, samples: list[Sample], params: dict) -> list[Sample]:
    async def run():
        return await asyncio.gather(*(engine.generate(s, params) for s in samples))

    return asyncio.run(run())


def test_greedy_matches_hf_tokens_and_log_probs(engine, hf_model, hf_greedy) -> None:
    batch = prompts(8)
    samples = generate_all(
        engine, [Sample(index=i, tokens=list(p)) for i, p in enumerate(batch)], GREEDY | {"max_new_tokens": 12}
    )
    for prompt, sample in zip(batch, samples, strict=True):
        tokens, log_probs = hf_greedy(hf_model, prompt, 12)
        assert sample.tokens == prompt + tokens
        assert sample.response_length == 12
        assert sample.loss_mask == [1] * 12
        assert sample.rollout_log_probs == pytest.approx(log_probs, abs=1e-4)
        assert sample.status is Status.TRUNCATED  # stopped by max_new_tokens
        assert sample.weight_versions == ["default"]


def test_both_engines_serve_traffic(engine) -> None:
    def served(server) -> int:
        return len(re.findall(r'"POST /generate HTTP/1.1" 200', server.config.log_path.read_text()))

    before = [served(s) for s in engine.servers]
    generate_all(engine, [Sample(tokens=p) for p in prompts(6, seed=1)], GREEDY | {"max_new_tokens": 2})
    after = [served(s) for s in engine.servers]
    assert len(engine.servers) == 2
    assert all(a > b for a, b in zip(after, before, strict=True)), (before, after)
    assert sorted(engine.router.worker_urls()) == sorted(engine.engine_urls)


def test_stop_token_completes_and_continuation_resumes(engine, hf_model, hf_greedy) -> None:
    prompt = prompts(1, seed=2)[0]
    tokens, log_probs = hf_greedy(hf_model, prompt, 10)

    # Stopping on the 4th greedy token: COMPLETED, and the stop token is part of the response.
    # (ignore_eos would also ignore stop_token_ids, so this request runs without it.)
    stop_id = tokens[3]
    first_hit = tokens.index(stop_id)
    assert not {0, 2} & set(tokens[: first_hit + 1])  # no EOS before the stop token in this prompt's greedy path
    stop_params = {"temperature": 0.0, "max_new_tokens": 10, "stop_token_ids": [stop_id]}
    [sample] = generate_all(engine, [Sample(tokens=list(prompt))], stop_params)
    assert sample.status is Status.COMPLETED
    assert sample.tokens == prompt + tokens[: first_hit + 1]

    # A partial response of 4 tokens continued to a budget of 10 gives the same 10 tokens as one request.
    [partial] = generate_all(engine, [Sample(tokens=list(prompt))], GREEDY | {"max_new_tokens": 4})
    assert partial.response_length == 4
    [whole] = generate_all(engine, [partial], GREEDY | {"max_new_tokens": 10})
    assert whole.tokens == prompt + tokens
    assert whole.rollout_log_probs == pytest.approx(log_probs, abs=1e-4)
    assert whole.status is Status.TRUNCATED

    # Nothing left of the budget: no request, TRUNCATED.
    [done] = generate_all(engine, [whole], GREEDY | {"max_new_tokens": 10})
    assert done.response_length == 10 and done.status is Status.TRUNCATED


def test_abort_mid_batch_then_engines_accept_work(engine) -> None:
    params = {"temperature": 1.0, "max_new_tokens": 3000, "ignore_eos": True}

    async def run():
        tasks = [
            asyncio.create_task(engine.generate(Sample(index=i, tokens=p), params))
            for i, p in enumerate(prompts(24, seed=3))
        ]
        await asyncio.sleep(3.0)
        await engine.abort()
        return await asyncio.gather(*tasks)

    samples = asyncio.run(run())
    statuses = {s.status for s in samples}
    assert statuses <= {Status.ABORTED, Status.TRUNCATED}, statuses
    assert Status.ABORTED in statuses
    for s in samples:  # whatever came back before the abort is kept, aligned
        assert len(s.tokens) == s.prompt_length + s.response_length
        assert len(s.rollout_log_probs or []) == s.response_length

    [after] = generate_all(engine, [Sample(tokens=prompts(1, seed=4)[0])], GREEDY | {"max_new_tokens": 3})
    assert after.status is Status.TRUNCATED and after.response_length == 3


def test_a_group_as_one_request_samples_each_response_from_the_prompt(engine, hf_model) -> None:
    def served() -> int:
        return sum(
            len(re.findall(r'"POST /generate HTTP/1.1" 200', s.config.log_path.read_text())) for s in engine.servers
        )

    prompt = prompts(1, seed=5)[0]
    group = [Sample(index=i, tokens=list(prompt)) for i in range(4)]
    before = served()
    asyncio.run(engine.generate_group(group, {"temperature": 1.0, "max_new_tokens": 8, "ignore_eos": True}))
    assert served() == before + 1  # one HTTP request for the whole group
    assert len({tuple(s.tokens) for s in group}) > 1  # independent draws
    for sample in group:
        assert sample.tokens[: len(prompt)] == prompt and sample.response_length == 8
        assert sample.status is Status.TRUNCATED and sample.loss_mask == [1] * 8
        # Each sample's log-probs are the model's for its own tokens: the answers were not mixed up.
        with torch.no_grad():
            log_probs = torch.log_softmax(hf_model(torch.tensor([sample.tokens])).logits[0].float(), dim=-1)
        expected = [float(log_probs[t - 1, sample.tokens[t]]) for t in range(len(prompt), len(sample.tokens))]
        assert sample.rollout_log_probs == pytest.approx(expected, abs=1e-3)


def test_an_aborted_group_request_returns_every_sample_aligned(engine) -> None:
    params = {"temperature": 1.0, "max_new_tokens": 3000, "ignore_eos": True}
    group = [Sample(index=i, tokens=list(prompts(1, seed=6)[0])) for i in range(3)]

    async def run():
        task = asyncio.create_task(engine.generate_group(group, params))
        await asyncio.sleep(3.0)
        await engine.abort()
        return await task

    asyncio.run(run())
    assert {s.status for s in group} == {Status.ABORTED}
    for s in group:
        assert len(s.tokens) == s.prompt_length + s.response_length
        assert len(s.rollout_log_probs or []) == s.response_length
