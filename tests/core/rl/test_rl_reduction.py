import random

import pytest
import torch

from slime.rl.reduction import make_reducer, split_packed


def random_packed(seed):
    rng = random.Random(seed)
    lengths = [rng.randint(1, 40) for _ in range(6)]
    masks = [[int(rng.random() < 0.7) for _ in range(n)] for n in lengths]
    masks[3] = [0] * lengths[3]
    values = [[rng.gauss(0, 1) for _ in range(n)] for n in lengths]
    return lengths, masks, values


def pack(rows, dtype=torch.float64):
    return torch.tensor([x for row in rows for x in row], dtype=dtype)


@pytest.mark.parametrize("seed", range(3))
def test_per_sample_mean(seed):
    lengths, masks, values = random_packed(seed)
    reducer = make_reducer(lengths, pack(masks, torch.long), calculate_per_token_loss=False)
    sample_means = [
        sum(v * m for v, m in zip(vs, ms, strict=True)) / max(sum(ms), 1) for vs, ms in zip(values, masks, strict=True)
    ]
    assert reducer(pack(values)).item() == pytest.approx(sum(sample_means) / len(lengths), rel=1e-12)


@pytest.mark.parametrize("seed", range(3))
def test_per_token_mean(seed):
    lengths, masks, values = random_packed(seed)
    reducer = make_reducer(lengths, pack(masks, torch.long), calculate_per_token_loss=True)
    total = sum(v * m for vs, ms in zip(values, masks, strict=True) for v, m in zip(vs, ms, strict=True))
    assert reducer(pack(values)).item() == pytest.approx(total / sum(map(sum, masks)), rel=1e-12)


def test_long_answers_do_not_dominate_per_sample_mean():
    lengths = [1, 99]
    reducer = make_reducer(lengths, torch.ones(100), calculate_per_token_loss=False)
    values = torch.cat([torch.tensor([1.0]), torch.zeros(99)])
    assert reducer(values).item() == pytest.approx(0.5)
    assert make_reducer(lengths, torch.ones(100), True)(values).item() == pytest.approx(0.01)


def test_micro_batches_add_up_to_the_step():
    """Given the step's counts, reductions of the micro-batches sum to the reduction of the whole step."""
    lengths, masks, values = random_packed(7)
    for per_token in (False, True):
        whole = make_reducer(lengths, pack(masks, torch.long), per_token)(pack(values)).item()
        parts = 0.0
        for chunk in (slice(0, 2), slice(2, 5), slice(5, 6)):
            reducer = make_reducer(
                lengths[chunk],
                pack(masks[chunk], torch.long),
                per_token,
                sample_mask_sums=[sum(m) for m in masks[chunk]],
                num_samples=len(lengths),
                num_tokens=sum(map(sum, masks)),
            )
            parts += reducer(pack(values[chunk])).item()
        assert parts == pytest.approx(whole, rel=1e-12)


def test_explicit_mask_and_shared_denominators():
    lengths = [2, 2]
    reducer = make_reducer(lengths, torch.tensor([1, 1, 1, 0]), False, sample_mask_sums=[3, 3])
    values = torch.tensor([1.0, 2.0, 3.0, 4.0])
    # Two samples of one rollout share its mask total (3) as their denominator.
    assert reducer(values).item() == pytest.approx((3 / 3 + 3 / 3) / 2)
    assert reducer(values, torch.tensor([0, 1, 0, 1])).item() == pytest.approx((2 / 3 + 4 / 3) / 2)


def test_lengths_must_cover_the_mask():
    with pytest.raises(ValueError, match="sum to 3"):
        make_reducer([1, 2], torch.ones(4), False)


def test_split_packed():
    parts = split_packed(torch.arange(6), [1, 0, 5])
    assert [p.tolist() for p in parts] == [[0], [], [1, 2, 3, 4, 5]]
