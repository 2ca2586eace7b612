"""Qwen3-MoE on the megatron backend: HF's logits, a bit-exact weight round trip, `slime convert`, and expert
parallelism 2 over gloo training like one process (with the routers' load-balancing loss under train/)."""

import pytest
import torch
from megatron_helpers import (
    assert_same_steps,
    assert_slime_convert_round_trips,
    build_random_model,
    make_args,
    make_batch,
    make_trainer,
    megatron_model,
    run_two_ranks,
    train_rollouts,
)
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

from slime.config.arguments import parse_args
from slime.errors import ConfigError
from slime_megatron.batches import split_to_count
from slime_megatron.hf_config import HFModelConfig
from slime_megatron.hf_mapping import gather_hf_state_dict

AUX = ("--moe-aux-loss-coeff", "0.01")


@pytest.fixture(scope="module")
def moe_raw_topk(tmp_path_factory):
    """The other routing and layer rules: top-2 weights not renormalised, every second layer sparse (layer 1), so
    dense MLPs sit among MoE layers (megatron trains it; SGLang 0.5.23 cannot serve it: slime_sglang refuses it)."""
    path = tmp_path_factory.mktemp("models") / "moe_raw_topk"
    return build_random_model(path, "qwen3_moe", norm_topk_prob=False, decoder_sparse_step=2, mlp_only_layers=())


def _logits_diff(hf_dir) -> float:
    hf, model = megatron_model(hf_dir)
    reference = AutoModelForCausalLM.from_pretrained(hf_dir, dtype=torch.float32).eval()
    tokens = torch.randint(0, hf.vocab_size, (3, 11), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours = model(tokens, torch.arange(11).expand(3, 11), None)
        theirs = reference(tokens).logits
    return (ours[..., : hf.vocab_size] - theirs).abs().max().item()


def test_logits_equal_hf_transformers(world, tiny_moe_model, moe_raw_topk):
    hf = HFModelConfig.load(tiny_moe_model)
    assert (hf.num_experts, hf.moe_topk, hf.moe_layers, hf.norm_topk_prob) == (4, 2, (1, 1, 1), True)
    assert HFModelConfig.load(moe_raw_topk).moe_layers == (0, 1, 0)
    for hf_dir in (tiny_moe_model, moe_raw_topk):
        diff = _logits_diff(hf_dir)
        assert diff < 1e-4, f"{hf_dir.name}: max |megatron - HF| = {diff}"


def test_hf_to_megatron_to_hf_round_trips_bit_exactly(world, tiny_moe_model, moe_raw_topk):
    for hf_dir in (tiny_moe_model, moe_raw_topk):
        hf, model = megatron_model(hf_dir)
        original = load_file(hf_dir / "model.safetensors")
        exported = gather_hf_state_dict(model, hf)
        assert "model.layers.1.mlp.experts.3.gate_proj.weight" in exported  # per-expert names, as on disk
        assert sorted(exported) == sorted(original)
        for name, tensor in original.items():
            assert torch.equal(exported[name], tensor), name


def test_slime_convert_round_trips_a_moe_model(world, tiny_moe_model, tmp_path):
    assert_slime_convert_round_trips(tiny_moe_model, tmp_path)


def test_moe_shape_flags_and_expert_parallelism_are_checked_in_one_line(tiny_moe_model):
    config = tiny_moe_model / "config.json"
    base = ["--hf-checkpoint", str(tiny_moe_model), "--actor-num-gpus-per-node", "2"]
    cases = {
        ("--num-experts", "8"): f"--num-experts (8) disagrees with {config}: num_experts is 4",
        ("--moe-router-topk", "8"): f"--moe-router-topk (8) disagrees with {config}: num_experts_per_tok is 2",
        ("--moe-ffn-hidden-size", "768"): f"--moe-ffn-hidden-size (768) disagrees with {config}: "
        "moe_intermediate_size is 32",
        (
            "--moe-router-pre-softmax",
        ): f"--moe-router-pre-softmax (True) disagrees with {config}: norm_topk_prob is True",
        ("--moe-layer-freq", "[1,0,1]"): f"--moe-layer-freq ([1,0,1]) disagrees with {config}: decoder_sparse_step "
        "/ mlp_only_layers make the MoE layers [1, 1, 1]",
        ("--expert-model-parallel-size", "3", "--actor-num-gpus-per-node", "3"): "--expert-model-parallel-size 3 "
        "does not divide the model's 4 experts",
        ("--expert-tensor-parallel-size", "2"): "--expert-tensor-parallel-size 2: experts split over "
        "tensor-parallel ranks are not supported yet (use 1: each expert whole on one rank)",
    }
    for flags, message in cases.items():
        with pytest.raises(ConfigError) as error:
            parse_args([*base, *flags])
        assert str(error.value) == message
    args = parse_args([*base, "--moe-layer-freq", "1", "--expert-model-parallel-size", "2"])
    assert (args.num_experts, args.moe_router_topk, args.moe_ffn_hidden_size) == (4, 2, 32)


def test_split_to_count_evens_micro_batch_counts():
    assert split_to_count([[0, 1, 2, 3]], 3) == [[0], [1], [2, 3]]
    assert split_to_count([[0], [1, 2]], 3) == [[0], [1], [2]]
    with pytest.raises(ValueError, match="2 samples cannot make 3 micro-batches"):
        split_to_count([[0], [1]], 3)


def _one_expert_group(steps: list[dict]) -> list[dict]:
    """With EP > 1 megatron gives the experts an optimizer of their own: one more ``lr-pg_*`` (at the same rate)."""
    for step in steps:
        assert step.pop("lr-pg_2") == step["lr-pg_0"]
    return steps


@pytest.mark.slow
def test_expert_parallel_2_trains_like_one_process(world, tiny_moe_model, tmp_path):
    results = run_two_ranks(tiny_moe_model, tmp_path, "moe")
    parallel = results["steps"]
    assert results["exports"] == dict.fromkeys(parallel, True)  # experts gathered over EP: bit-exact

    batch = make_batch(600)
    single = train_rollouts(make_trainer(make_args(tiny_moe_model, *AUX)), batch, range(2))
    assert single[0]["load_balancing_loss"] > 0  # train/load_balancing_loss, Megatron's tracker name
    no_aux = train_rollouts(make_trainer(make_args(tiny_moe_model)), batch, range(1))
    assert "load_balancing_loss" not in no_aux[0]  # coefficient 0 (slime's Qwen3-30B-A3B script): not applied
    # Token budgets cut the ranks' shares into 1 and 2 micro-batches; evened out, the step neither hangs nor
    # changes its result.
    assert_same_steps(_one_expert_group(parallel["ep2_token_budget"]), single, "ep2_token_budget")

    # SGD with lr 1 from the same weights: the weights' change is the (clipped) gradient of every parameter.
    sgd = make_trainer(make_args(tiny_moe_model, *AUX, "--optimizer", "sgd", "--lr", "1.0"))
    train_rollouts(sgd, batch, range(2))
    expected = sgd.hf_state_dict()
    got = results["weights"]["ep2_sgd"]
    assert sorted(got) == sorted(expected)
    for name, tensor in expected.items():
        diff = (torch.tensor(got[name]) - tensor).abs().max().item()
        assert diff < 1e-5, f"{name}: {diff}"
