"""GLM4 on the megatron backend: HF's logits, a bit-exact weight round trip, slime's ``--spec slime_plugins.models.glm4
get_glm_spec`` with scripts/models/glm4-9B.sh's flags (sizes pointed at the tiny model) training, and GLM4's flags
checked against config.json."""

import pytest
import torch
from launch_scripts import MODELS, argv
from megatron_helpers import (
    assert_log_probs_equal_hf,
    make_args,
    make_batch,
    make_trainer,
    megatron_model,
    train_rollouts,
)
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

from slime.config.arguments import parse_args
from slime.errors import ConfigError
from slime_megatron.hf_config import HFModelConfig
from slime_megatron.hf_mapping import Layout, gather_hf_state_dict, to_hf, to_megatron
from slime_megatron.post_norms import PostNormTransformerLayer


def _glm4_9b_flags(hf: HFModelConfig) -> list[str]:
    """scripts/models/glm4-9B.sh's MODEL_ARGS as slime passes them, with the sizes of the tiny model."""
    flags = MODELS["glm4-9B"].split()
    for flag, value in {
        "--num-layers": hf.num_layers, "--hidden-size": hf.hidden_size, "--ffn-hidden-size": hf.intermediate_size,
        "--num-attention-heads": hf.num_heads, "--num-query-groups": hf.num_kv_heads, "--vocab-size": hf.vocab_size,
        "--norm-epsilon": hf.rms_norm_eps,
    }.items():  # fmt: skip
        flags[flags.index(flag) + 1] = str(value)
    return flags


def test_logits_equal_hf_transformers(world, tiny_glm4_model):
    """Without --spec or GLM flags: config.json's glm4 fills them in."""
    hf, model = megatron_model(tiny_glm4_model)
    assert (hf.glm, hf.partial_rotary_factor, hf.qkv_bias, hf.tie_word_embeddings) == (True, 0.5, True, False)
    assert all(isinstance(layer, PostNormTransformerLayer) for layer in model.decoder.layers)
    reference = AutoModelForCausalLM.from_pretrained(tiny_glm4_model, dtype=torch.float32).eval()
    assert type(reference).__name__ == "Glm4ForCausalLM"
    tokens = torch.randint(0, hf.vocab_size, (3, 11), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours = model(tokens, torch.arange(11).expand(3, 11), None)
        theirs = reference(tokens).logits
    diff = (ours[..., : hf.vocab_size] - theirs).abs().max().item()
    assert diff < 1e-4, f"max |megatron - HF| = {diff}"


def test_hf_to_megatron_to_hf_round_trips_bit_exactly(world, tiny_glm4_model):
    hf, model = megatron_model(tiny_glm4_model)
    original = load_file(tiny_glm4_model / "model.safetensors")
    exported = gather_hf_state_dict(model, hf)
    assert {"model.layers.1.mlp.gate_up_proj.weight", "model.layers.1.post_mlp_layernorm.weight"} <= set(exported)
    assert sorted(exported) == sorted(original)
    for name, tensor in original.items():
        assert torch.equal(exported[name], tensor), name


def test_fused_gate_up_is_split_per_tensor_parallel_rank():
    hf = HFModelConfig.from_dict({"model_type": "glm4", "num_attention_heads": 4, "hidden_size": 8, "vocab_size": 8,
                                  "intermediate_size": 6, "num_hidden_layers": 1})  # fmt: skip
    gate_up = torch.arange(12 * 8, dtype=torch.float32).reshape(12, 8)  # [gate (6 rows); up (6 rows)]
    shards = [to_megatron(Layout.FUSED_GATE_UP, [gate_up], hf, rank, 2) for rank in range(2)]
    assert torch.equal(shards[1], torch.cat([gate_up[3:6], gate_up[9:12]]))  # rank 1: its gate rows, its up rows
    (back,) = to_hf(Layout.FUSED_GATE_UP, shards, hf)
    assert torch.equal(back, gate_up)


def test_slime_glm4_spec_builds_hf_model_and_trains(world, tiny_glm4_model):
    hf = HFModelConfig.load(tiny_glm4_model)
    args = make_args(tiny_glm4_model, *_glm4_9b_flags(hf))
    assert args.spec == ["slime_plugins.models.glm4", "get_glm_spec"]
    trainer = make_trainer(args)
    batch = make_batch(hf.vocab_size)
    ids = list(range(len(batch)))
    before = trainer.compute_log_probs(batch, ids)
    assert_log_probs_equal_hf(before, tiny_glm4_model, batch)
    steps = train_rollouts(trainer, batch, range(1))
    assert len(steps) == 2 and all(step["grad_norm"] > 0 for step in steps)
    after = trainer.compute_log_probs(batch, ids)
    assert any((after[i] - before[i]).abs().max().item() > 1e-4 for i in ids)


def test_glm4_flags_are_checked_against_config_json(tiny_glm4_model, tiny_models):
    preset = MODELS["glm4-9B"].split()
    with pytest.raises(ConfigError, match=r"^--num-layers \(40\) disagrees with .*: num_hidden_layers is 2$"):
        parse_args(["--hf-checkpoint", str(tiny_glm4_model), *preset])
    with pytest.raises(
        ConfigError, match=r"^--rotary-percent \(0.25\) disagrees with .*: partial_rotary_factor is 0.5$"
    ):
        parse_args(["--hf-checkpoint", str(tiny_glm4_model), "--rotary-percent", "0.25"])
    with pytest.raises(ConfigError, match=r"^--post-mlp-layernorm \(True\) disagrees with .*: model_type is qwen2$"):
        parse_args(["--hf-checkpoint", str(tiny_models["qwen2"]), "--post-mlp-layernorm"])
    args = parse_args(["--hf-checkpoint", str(tiny_glm4_model)])  # filled in from config.json
    assert args.post_self_attn_layernorm and args.post_mlp_layernorm and args.rotary_interleaved
    assert (args.rotary_percent, args.add_qkv_bias, args.untie_embeddings_and_output_weights) == (0.5, True, True)


def test_run_glm4_9b_parses_with_context_parallelism_refused():
    """slime's run-glm4-9B.sh: its GLM spec is this backend's local spec, whose attention has no context parallelism
    (the script asks for 2), so that is one line at parse time; with CP 1 the rest parses unchanged."""
    script = argv("run-glm4-9B.sh")
    with pytest.raises(ConfigError, match=r"^--context-parallel-size 2: megatron-core's local attention"):
        parse_args(script)
    script[script.index("--context-parallel-size") + 1] = "1"
    args = parse_args(script)
    assert args.spec == ["slime_plugins.models.glm4", "get_glm_spec"] and args.rotary_interleaved
    assert args.post_self_attn_layernorm and args.post_mlp_layernorm and args.rotary_percent == 0.5
