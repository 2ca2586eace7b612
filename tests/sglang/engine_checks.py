"""Helpers of the engine tests: an engine of its own for a model, perturbed copies of a model, and checks that engines generate exactly what HF
transformers generates with given weights. Imported by test modules through ``sys.path`` (pytest runs with
``--import-mode=importlib``)."""

import asyncio
import contextlib
import copy
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from slime.config.arguments import parse_args
from slime.types import Sample

PROMPTS = [[5, 17, 42, 99, 7], [300, 301, 12], [64, 65, 66, 67, 68, 69, 70, 71]]
PARAMS = {"temperature": 0.0, "max_new_tokens": 8, "ignore_eos": True}


@contextlib.contextmanager
def one_cpu_engine(model: Path, output_dir: Path, *extra: str) -> Iterator:
    """A real SGLang CPU engine of its own serving ``model`` (for a model the shared deployment does not serve),
    shut down with its weight senders at the end; ``extra``: more slime flags."""
    from slime_sglang import weight_updates
    from slime_sglang.engine import SGLangRolloutEngine

    args = parse_args(
        [
            "--hf-checkpoint", str(model),
            "--rollout-num-gpus", "1", "--rollout-num-gpus-per-engine", "1",
            "--output-dir", str(output_dir),
            "--sglang-device", "cpu", "--sglang-max-total-tokens", "2048", "--sglang-max-running-requests", "8",
            "--sglang-server-start-timeout", "400",
            *extra,
        ]
    )  # fmt: skip
    engine = SGLangRolloutEngine(args)
    engine.start()
    try:
        yield engine
    finally:
        while weight_updates._senders:  # one sender per transport (issue 20's engine placement)
            weight_updates._senders.popitem()[1].close()
        engine.shutdown()


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
