import math
import random

import pytest
import torch

from slime.rl.logprobs import log_probs_and_entropy, log_probs_from_logits


def reference(logits, tokens, temperature):
    log_probs, entropies = [], []
    for row, token in zip(logits, tokens, strict=True):
        scaled = [x / temperature for x in row]
        top = max(scaled)
        log_z = top + math.log(sum(math.exp(x - top) for x in scaled))
        log_p = [x - log_z for x in scaled]
        log_probs.append(log_p[token])
        entropies.append(-sum(math.exp(lp) * lp for lp in log_p))
    return log_probs, entropies


@pytest.mark.parametrize("temperature", [1.0, 0.7, 1.3])
def test_matches_reference(temperature):
    rng = random.Random(0)
    logits = [[rng.gauss(0, 3) for _ in range(50)] for _ in range(20)]
    tokens = [rng.randrange(50) for _ in range(20)]
    expected_lp, expected_entropy = reference(logits, tokens, temperature)
    x = torch.tensor(logits, dtype=torch.float64)
    got_lp = log_probs_from_logits(x, torch.tensor(tokens), temperature)
    _, got_entropy = log_probs_and_entropy(x, torch.tensor(tokens), temperature, "grad")
    torch.testing.assert_close(got_lp, torch.tensor(expected_lp, dtype=torch.float64), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(got_entropy, torch.tensor(expected_entropy, dtype=torch.float64), rtol=1e-12, atol=1e-12)


def test_half_precision_logits_are_upcast():
    logits = torch.randn(4, 1000, generator=torch.Generator().manual_seed(0)).bfloat16()
    tokens = torch.tensor([1, 2, 3, 4])
    got = log_probs_from_logits(logits, tokens, 0.8)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, log_probs_from_logits(logits.float(), tokens, 0.8))


def test_gradient_reaches_logits():
    logits = torch.randn(3, 5, dtype=torch.float64, requires_grad=True)
    tokens = torch.tensor([0, 4, 2])
    (grad,) = torch.autograd.grad(log_probs_from_logits(logits, tokens, 0.5).sum(), [logits])
    probs = torch.softmax(logits.detach() / 0.5, dim=-1)
    expected = (torch.nn.functional.one_hot(tokens, 5) - probs) / 0.5
    torch.testing.assert_close(grad, expected)


def test_temperature_must_be_positive():
    with pytest.raises(ValueError, match="temperature"):
        log_probs_from_logits(torch.zeros(1, 2), torch.tensor([0]), 0.0)


def entropy_reference(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    log_p = torch.log_softmax(logits / temperature, dim=-1)
    return -(log_p.exp() * log_p).sum(-1)


def test_log_probs_and_entropy_from_one_log_softmax():
    """Same values as the log-probs alone and a plain entropy; the entropy carries a gradient only when asked to."""
    tokens = torch.tensor([0, 4, 2])
    for mode in ("none", "detached", "grad"):
        logits = torch.randn(3, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(1), requires_grad=True)
        log_probs, entropy = log_probs_and_entropy(logits, tokens, 0.7, mode)
        torch.testing.assert_close(log_probs, log_probs_from_logits(logits, tokens, 0.7))
        if mode == "none":
            assert entropy is None
            continue
        torch.testing.assert_close(entropy, entropy_reference(logits, 0.7))
        assert entropy.requires_grad == (mode == "grad")
        if mode == "grad":
            (ours,) = torch.autograd.grad(entropy.sum(), [logits])
            (expected,) = torch.autograd.grad(entropy_reference(logits, 0.7).sum(), [logits])
            torch.testing.assert_close(ours, expected)
    with pytest.raises(ValueError, match="entropy must be"):
        log_probs_and_entropy(logits, tokens, 0.7, "yes")
