"""GLM-4.5 (glm4_moe) on the megatron backend: HF's logits, a bit-exact weight round trip (router biases included),
a training step, and GLM-4.5's MoE flags filled from and checked against config.json.

The tiny model has what GLM-4.5 has beyond Qwen3-MoE: a dense first layer (first_k_dense_replace), a shared expert,
a sigmoid router whose choice adds a per-expert bias (e_score_correction_bias, megatron's expert_bias buffer), grouped
top-k (2 of 8 experts from the best 1 of 2 groups), a routed scaling factor, q/k norms and non-interleaved half rotary.
"""

import math

import numpy as np
import pytest
import torch
from megatron_helpers import (
    assert_log_probs_equal_hf,
    assert_same_steps,
    assert_slime_convert_round_trips,
    build_random_model,
    engine_rollout,
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
from slime.metrics.perf import decoder_fwd_flops
from slime_megatron.hf_config import HFModelConfig
from slime_megatron.hf_mapping import gather_hf_state_dict, mapped_tensors
from slime_megatron.routing_replay import RECORD, REPLAY


@pytest.fixture(scope="module")
def glm4_moe_model(tmp_path_factory):
    return build_random_model(tmp_path_factory.mktemp("models") / "glm4_moe", "glm4_moe")


@pytest.fixture(scope="module")
def glm45_air_like(tmp_path_factory):
    """GLM-4.5-Air's other choices: no q/k norms, one expert group, no scaling; and two shared experts' worth."""
    path = tmp_path_factory.mktemp("models") / "glm45_air_like"
    extra = {"use_qk_norm": False, "n_shared_experts": 2}
    return build_random_model(path, "glm4_moe", n_group=1, routed_scaling_factor=1.0, config_extra=extra)


def test_config_json_is_read_as_glm_4_5(glm4_moe_model):
    hf = HFModelConfig.load(glm4_moe_model)
    assert (hf.num_experts, hf.moe_topk, hf.moe_layers, hf.shared_expert_intermediate_size) == (8, 2, (0, 1, 1), 32)
    assert (hf.router_score_function, hf.expert_bias, hf.router_num_groups, hf.router_group_topk) == (
        "sigmoid", True, 2, 1
    )  # fmt: skip
    assert (hf.router_scaling_factor, hf.qk_norm, hf.qkv_bias, hf.glm, hf.partial_rotary_factor) == (
        2.5, True, True, False, 0.5
    )  # fmt: skip
    # The FLOPs count: a dense first layer, then 2 routed experts and the shared expert per token.
    one_token = decoder_fwd_flops(hf.raw, [1])
    dense = decoder_fwd_flops({**hf.raw, "first_k_dense_replace": 3}, [1])
    assert dense - one_token == 2 * 3 * 2 * hf.hidden_size * (hf.intermediate_size - 3 * hf.moe_intermediate_size)


def test_logits_equal_hf_transformers(world, glm4_moe_model, glm45_air_like):
    air = HFModelConfig.load(glm45_air_like)
    assert (air.qk_norm, air.router_num_groups, air.router_scaling_factor, air.shared_expert_intermediate_size) == (
        False, 1, 1.0, 64
    )  # fmt: skip
    for hf_dir in (glm4_moe_model, glm45_air_like):
        hf, model = megatron_model(hf_dir)
        reference = AutoModelForCausalLM.from_pretrained(hf_dir, dtype=torch.float32).eval()
        assert type(reference).__name__ == "Glm4MoeForCausalLM"
        bias = reference.model.layers[1].mlp.gate.e_score_correction_bias
        assert bias.abs().min() > 0 and torch.equal(model.decoder.layers[1].mlp.router.expert_bias, bias)
        tokens = torch.randint(0, hf.vocab_size, (3, 11), generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            ours = model(tokens, torch.arange(11).expand(3, 11), None)
            theirs = reference(tokens).logits
        diff = (ours[..., : hf.vocab_size] - theirs).abs().max().item()
        assert diff < 1e-4, f"{hf_dir.name}: max |megatron - HF| = {diff}"


def test_hf_to_megatron_to_hf_round_trips_bit_exactly(world, glm4_moe_model, glm45_air_like):
    for hf_dir in (glm4_moe_model, glm45_air_like):
        hf, model = megatron_model(hf_dir)
        original = load_file(hf_dir / "model.safetensors")
        exported = gather_hf_state_dict(model, hf)
        assert {
            "model.layers.0.mlp.gate_proj.weight",
            "model.layers.1.mlp.experts.7.down_proj.weight",
            "model.layers.1.mlp.shared_experts.gate_proj.weight",
            "model.layers.2.mlp.gate.e_score_correction_bias",
        } <= set(exported)
        assert sorted(exported) == sorted(original)
        for name, tensor in original.items():
            assert torch.equal(exported[name], tensor), name


def test_slime_convert_round_trips_bit_exactly(world, glm4_moe_model, tmp_path):
    """Through a megatron checkpoint, where the router biases are buffers (saved with the parameters)."""
    assert_slime_convert_round_trips(glm4_moe_model, tmp_path)


def test_one_training_step_moves_weights_and_router_biases(world, glm4_moe_model):
    args = make_args(glm4_moe_model)
    trainer = make_trainer(args)
    batch = make_batch(600)
    ids = list(range(len(batch)))
    before = trainer.compute_log_probs(batch, ids)
    assert_log_probs_equal_hf(before, glm4_moe_model, batch)
    weights = {name: t.detach().clone() for name, t in mapped_tensors(trainer.trainable.model).items()}
    steps = train_rollouts(trainer, batch, range(1))
    assert len(steps) == 2 and all(step["grad_norm"] > 0 and math.isfinite(step["loss"]) for step in steps)
    after = mapped_tensors(trainer.trainable.model)
    moved = {name for name, t in weights.items() if not torch.equal(after[name], t)}
    # Every expert a token was routed to, the shared expert and the routers (weights by gradient, biases by
    # megatron's aux-loss-free balancing at --moe-router-bias-update-rate's default) moved.
    for name in ("decoder.layers.1.mlp.shared_experts.linear_fc1.weight", "decoder.layers.2.mlp.router.weight",
                 "decoder.layers.2.mlp.router.expert_bias", "decoder.layers.0.mlp.linear_fc1.weight"):  # fmt: skip
        assert name in moved, name
    later = trainer.compute_log_probs(batch, ids)
    assert any((later[i] - before[i]).abs().max().item() > 1e-4 for i in ids)


# MODEL_ARGS of slime's scripts/models/glm4.5-355B-A32B.sh, as the script passes them ($N_DENSE_LAYERS 3,
# $N_MOE_LAYERS 89), with the tiny model's sizes for GLM-4.5's.
GLM45_355B = """--disable-bias-linear --qk-layernorm --group-query-attention --num-attention-heads 96 --num-query-groups 8
    --kv-channels 128 --num-layers 92 --hidden-size 5120 --ffn-hidden-size 12288 --add-qkv-bias --normalization RMSNorm
    --position-embedding-type rope --rotary-percent 0.5 --swiglu --untie-embeddings-and-output-weights
    --vocab-size 151552 --rotary-base 1000000 --moe-ffn-hidden-size 1536 --moe-shared-expert-intermediate-size 1536
    --moe-router-pre-softmax --moe-router-score-function sigmoid --moe-router-enable-expert-bias
    --moe-router-bias-update-rate 0 --moe-router-load-balancing-type seq_aux_loss --moe-token-dispatcher-type alltoall
    --moe-router-topk 8 --moe-router-topk-scaling-factor 2.5 --moe-layer-freq [0]*3+[1]*89 --num-experts 160
    --moe-grouped-gemm --moe-router-dtype fp32 --moe-permute-fusion --moe-aux-loss-coeff 0"""
TINY = {
    "--num-attention-heads": "4", "--num-query-groups": "2", "--kv-channels": "16", "--num-layers": "3",
    "--hidden-size": "64", "--ffn-hidden-size": "256", "--vocab-size": "600", "--rotary-base": "10000",
    "--moe-ffn-hidden-size": "32", "--moe-shared-expert-intermediate-size": "32", "--moe-router-topk": "2",
    "--moe-layer-freq": "[0]*1+[1]*2", "--num-experts": "8",
}  # fmt: skip


def test_slime_glm45_script_flags_give_hf_log_probs_and_train(world, glm4_moe_model):
    """The script's flags as they are (a sigmoid router with --moe-router-pre-softmax, which Megatron ignores there;
    the layer pattern as an expression), only the sizes the tiny model's."""
    flags = GLM45_355B.split()
    for flag, value in TINY.items():
        flags[flags.index(flag) + 1] = value
    trainer = make_trainer(make_args(glm4_moe_model, *flags))
    batch = make_batch(600)
    ids = list(range(len(batch)))
    before = trainer.compute_log_probs(batch, ids)
    assert_log_probs_equal_hf(before, glm4_moe_model, batch)
    bias = mapped_tensors(trainer.trainable.model)["decoder.layers.1.mlp.router.expert_bias"].clone()
    steps = train_rollouts(trainer, batch, range(1))
    assert len(steps) == 2 and all(step["grad_norm"] > 0 for step in steps)
    assert torch.equal(mapped_tensors(trainer.trainable.model)["decoder.layers.1.mlp.router.expert_bias"], bias)
    with pytest.raises(ConfigError, match=r"^--num-layers \(92\) disagrees with .*: num_hidden_layers is 3$"):
        parse_args(["--hf-checkpoint", str(glm4_moe_model), *GLM45_355B.split()])


@pytest.mark.slow
def test_tensor_and_expert_parallel_2_train_like_one_process(world, glm4_moe_model, tmp_path):
    """TP=2 with sequence parallelism and EP=2 on the same two ranks; SGD with lr 1 from the same weights, so the
    weights' change is the (clipped) gradient of every parameter. (Without the balancing update of the router biases:
    it counts sequence parallelism's padding tokens, see parallel_worker.py.)"""
    results = run_two_ranks(glm4_moe_model, tmp_path, "glm4_moe")
    assert results["exports"] == {"tp2_ep2_sgd": True}  # gathered over TP and EP: bit-exact
    flags = ("--moe-router-bias-update-rate", "0", "--optimizer", "sgd", "--lr", "1.0")
    single = make_trainer(make_args(glm4_moe_model, *flags))
    steps = train_rollouts(single, make_batch(600), range(2))
    parallel = results["steps"]["tp2_ep2_sgd"]
    for step in parallel:  # EP > 1: the experts' own optimizer group, at the same rate
        assert step.pop("lr-pg_2") == step["lr-pg_0"]
    assert_same_steps(parallel, steps, "tp2_ep2_sgd")
    expected, got = single.hf_state_dict(), results["weights"]["tp2_ep2_sgd"]
    assert sorted(got) == sorted(expected)
    for name, tensor in expected.items():
        diff = (torch.tensor(got[name]) - tensor).abs().max().item()
        assert diff < 1e-5, f"{name}: {diff}"


def test_routing_replay_decides_the_experts(world, glm4_moe_model):
    """Replayed routes go through the sigmoid router's biased, grouped choice (test_routing_replay.py, on GLM-4.5)."""
    trainer = make_trainer(make_args(glm4_moe_model, "--use-routing-replay"))
    batch = make_batch(600)
    ids = list(range(len(batch)))

    def gap(mode: str) -> float:
        got = trainer.forward_log_probs(batch, ids, mode)["log_probs"]
        return max((got[i] - routed[i]).abs().max().item() for i in ids)

    routed = trainer.forward_log_probs(batch, ids)["log_probs"]
    assert gap(RECORD) == 0
    routes = dict(trainer.replay.routes)
    assert routes[0].shape == (len(batch.tokens[0]), 2, 2)  # every token, 2 MoE layers (not the dense one), top-2
    assert gap(REPLAY) < 1e-5
    trainer.replay.routes = {i: (r + 1) % 8 for i, r in routes.items()}
    assert gap(REPLAY) > 1e-2


@pytest.mark.slow
def test_an_engines_routes_and_log_probs_are_the_trainers(ray_runtime, world, glm4_moe_model, tmp_path):
    """R3 with a real SGLang CPU engine (fp32, as the trainer): SGLang reports every layer's routes (the dense first
    layer's row too), the trainer replays its MoE layers' and finds them its own, and the log-probs agree."""
    samples, batch = engine_rollout(
        glm4_moe_model, tmp_path, "--use-rollout-routing-replay", num_prompts=8, max_new_tokens=16
    )
    ids = list(range(len(samples)))
    trainer = make_trainer(make_args(glm4_moe_model, "--use-rollout-routing-replay", "--rollout-temperature", "1.0"))
    own = trainer.forward_log_probs(batch, ids, RECORD)["log_probs"]
    for i, sample in enumerate(samples):
        own_rows = trainer.replay.routes[i][:-1].numpy()  # [tokens, 2 MoE layers, top-2]
        engine_rows = sample.rollout_routed_experts.reshape(len(own_rows), 3, 2)[:, 1:]  # all 3 layers
        assert (np.sort(own_rows, -1) == np.sort(engine_rows, -1)).all(), i
    trainer.replay.set_rollout_routes(batch.tokens, [s.rollout_routed_experts for s in samples], ids)
    replayed = trainer.forward_log_probs(batch, ids, REPLAY)["log_probs"]
    gaps = [
        max((log_probs[i] - torch.tensor(s.rollout_log_probs)).abs().max().item() for i, s in enumerate(samples))
        for log_probs in (own, replayed)
    ]
    print(f"trainer-vs-engine log-prob gap: own routes {gaps[0]:.2e}, the engine's {gaps[1]:.2e}")
    assert max(gaps) < 1e-4, gaps


def test_glm4_moe_flags_are_checked_against_config_json(glm4_moe_model):
    config = glm4_moe_model / "config.json"
    base = ["--hf-checkpoint", str(glm4_moe_model)]
    cases = {
        ("--moe-router-group-topk", "2"): f"--moe-router-group-topk (2) disagrees with {config}: topk_group is 1",
        ("--moe-shared-expert-intermediate-size", "64"): "--moe-shared-expert-intermediate-size (64) disagrees with "
        f"{config}: n_shared_experts is 1",
        ("--moe-router-topk-scaling-factor", "1.0"): "--moe-router-topk-scaling-factor (1.0) disagrees with "
        f"{config}: routed_scaling_factor is 2.5",
        ("--moe-router-num-groups", "4"): f"--moe-router-num-groups (4) disagrees with {config}: n_group is 2",
        ("--moe-layer-freq", "[1,1,1]"): f"--moe-layer-freq ([1,1,1]) disagrees with {config}: first_k_dense_replace "
        "makes the MoE layers [0, 1, 1]",
    }
    for flags, message in cases.items():
        with pytest.raises(ConfigError) as error:
            parse_args([*base, *flags])
        assert str(error.value) == message
    args = parse_args(base)  # filled in from config.json
    assert (args.num_experts, args.moe_router_topk, args.moe_ffn_hidden_size, args.moe_layer_freq) == (
        8,
        2,
        32,
        [0, 1, 1],
    )
    assert (args.moe_router_score_function, args.moe_router_enable_expert_bias) == ("sigmoid", True)
    assert (args.moe_router_num_groups, args.moe_router_group_topk, args.moe_router_topk_scaling_factor) == (2, 1, 2.5)
    assert (args.moe_shared_expert_intermediate_size, args.qk_layernorm, args.rotary_interleaved) == (32, True, False)
    assert (args.rotary_percent, args.add_qkv_bias, args.post_mlp_layernorm) == (0.5, True, False)


def test_routing_megatron_cannot_follow_is_one_line(tmp_path):
    config = {"model_type": "glm4_moe", "vocab_size": 8, "hidden_size": 8, "intermediate_size": 8,
              "num_hidden_layers": 2, "num_attention_heads": 2, "n_routed_experts": 8, "num_experts_per_tok": 4,
              "n_group": 4, "topk_group": 1}  # fmt: skip
    with pytest.raises(ValueError, match=r"megatron-core scores a group by its best num_experts_per_tok // "):
        HFModelConfig.from_dict(config)
    assert HFModelConfig.from_dict({**config, "topk_group": 2}).router_group_topk == 2
    with pytest.raises(ValueError, match=r"^glm4_moe with norm_topk_prob=False and num_experts_per_tok 4 "):
        HFModelConfig.from_dict({**config, "topk_group": 2, "norm_topk_prob": False})
