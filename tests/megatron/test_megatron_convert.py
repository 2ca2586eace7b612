"""hf-to-megatron and megatron-to-hf conversions, and runs that start from a converted (release) checkpoint."""

import torch
from megatron_helpers import assert_slime_convert_round_trips, make_args, make_batch, make_trainer

from slime_megatron.checkpoint import latest_iteration
from slime_megatron.convert import hf_to_megatron


def test_slime_convert_round_trips_hf_through_megatron(world, tiny_models, tmp_path):
    source = tiny_models["qwen3"]
    assert_slime_convert_round_trips(source, tmp_path)
    assert (tmp_path / "megatron" / "latest_checkpointed_iteration.txt").read_text() == "release\n"
    assert (tmp_path / "hf" / "tokenizer.json").exists()


def test_runs_start_from_a_converted_checkpoint(world, tiny_models, tmp_path):
    source = tiny_models["llama"]
    hf_to_megatron(source, tmp_path / "megatron")
    assert latest_iteration(tmp_path / "megatron") == -1
    args = make_args(source, "--load", str(tmp_path / "megatron"), "--ref-load", str(tmp_path / "megatron"))
    trainer = make_trainer(args)
    assert trainer.start_rollout_id == 0
    batch = make_batch(600)
    ids = list(range(len(batch)))
    actor, reference = trainer.compute_log_probs(batch, ids), trainer.compute_ref_log_probs(batch, ids)
    assert all(torch.equal(actor[i], reference[i]) for i in ids)
    assert trainer.train(0, batch)[0]["kl_loss"] == 0.0
