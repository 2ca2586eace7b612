import math
import random

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from slime.rl.whiten import masked_whiten


def random_rows(seed, num_samples):
    rng = random.Random(seed)
    lengths = [rng.randint(1, 50) for _ in range(num_samples)]
    values = [[rng.gauss(3.0, 2.0) for _ in range(n)] for n in lengths]
    masks = [[int(rng.random() < 0.7) for _ in range(n)] for n in lengths]
    masks[0] = [0] * lengths[0]
    return values, masks


def ref_whiten(values, masks):
    kept = [x for row, mask in zip(values, masks, strict=True) for x, m in zip(row, mask, strict=True) if m]
    mean = sum(kept) / len(kept)
    var = sum((x - mean) ** 2 for x in kept) / len(kept)
    return [[(x - mean) / math.sqrt(var + 1e-8) for x in row] for row in values]


def as_tensors(values, masks, dtype=torch.float64):
    return [torch.tensor(v, dtype=dtype) for v in values], [torch.tensor(m) for m in masks]


@pytest.mark.parametrize("seed", range(3))
def test_matches_reference(seed):
    values, masks = random_rows(seed, 7)
    got = masked_whiten(*as_tensors(values, masks))
    for g, e in zip(got, ref_whiten(values, masks), strict=True):
        torch.testing.assert_close(g, torch.tensor(e, dtype=torch.float64), rtol=1e-9, atol=1e-9)


def test_keeps_dtype():
    values, masks = random_rows(0, 3)
    assert all(w.dtype == torch.float32 for w in masked_whiten(*as_tensors(values, masks, torch.float32)))


def test_nothing_unmasked_leaves_values_unchanged():
    values = [torch.tensor([1.0, 2.0]), torch.tensor([3.0])]
    masks = [torch.zeros(2), torch.zeros(1)]
    assert all(torch.equal(a, b) for a, b in zip(masked_whiten(values, masks), values, strict=True))
    assert masked_whiten([], []) == []


def _whiten_on_rank(rank, world_size, init_file, shards, out_dir):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    try:
        values, masks = shards[rank]
        torch.save(masked_whiten(values, masks, group=dist.group.WORLD), f"{out_dir}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_two_gloo_ranks_match_one_process(tmp_path, monkeypatch, request):
    # Spawned ranks unpickle _whiten_on_rank by its module name, which pytest derives from the rootdir.
    monkeypatch.syspath_prepend(str(request.config.rootpath))
    values, masks = as_tensors(*random_rows(5, 9))
    # Uneven shards: rank 0 holds the fully masked sample and fewer samples than rank 1.
    shards = [(values[:3], masks[:3]), (values[3:], masks[3:])]
    mp.spawn(_whiten_on_rank, args=(2, str(tmp_path / "init"), shards, str(tmp_path)), nprocs=2)

    distributed = torch.load(tmp_path / "rank0.pt") + torch.load(tmp_path / "rank1.pt")
    single = masked_whiten(values, masks)
    assert len(distributed) == len(single)
    for d, s in zip(distributed, single, strict=True):
        torch.testing.assert_close(d, s, rtol=1e-12, atol=1e-12)
    # Whitening each rank alone would differ: the test can tell a missing all-reduce.
    assert not torch.allclose(masked_whiten(*shards[0])[1], single[1])
