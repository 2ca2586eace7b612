"""Helpers of the weight tests: perturbed copies of the tiny model, and checks that engines generate exactly what HF
transformers generates with given weights. Imported by test modules through ``sys.path`` (pytest runs with
``--import-mode=importlib``)."""

import asyncio
import copy

import pytest
import torch

from slime.types import Sample

PROMPTS = [[5, 17, 42, 99, 7], [300, 301, 12], [64, 65, 66, 67, 68, 69, 70, 71]]
PARAMS = {"temperature": 0.0, "max_new_tokens": 8, "ignore_eos": True}


def perturbed(model, seed: int):
    """A copy of ``model`` with every weight moved by noise large enough to change greedy choices."""
    other = copy.deepcopy(model)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in other.parameters():
            param.add_(torch.randn(param.shape, generator=generator) * 0.05)
    return other


def check_engine_matches(engine, model, hf_greedy) -> list[Sample]:
    async def run():
        return await asyncio.gather(*(engine.generate(Sample(tokens=list(p)), PARAMS) for p in PROMPTS))

    samples = asyncio.run(run())
    for prompt, sample in zip(PROMPTS, samples, strict=True):
        tokens, log_probs = hf_greedy(model, prompt, 8)
        assert sample.tokens[len(prompt) :] == tokens
        assert sample.rollout_log_probs == pytest.approx(log_probs, abs=1e-4)
    return samples


def hf_named_tensors(model) -> list[tuple[str, torch.Tensor]]:
    # Tied embeddings: SGLang has no separate lm_head to load.
    skip = {"lm_head.weight"} if model.config.tie_word_embeddings else set()
    return [(name, t) for name, t in model.state_dict().items() if name not in skip]
