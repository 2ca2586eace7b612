"""The megatron model built from an HF checkpoint computes HF's logits, and its weights round-trip bit-exactly."""

import pytest
import torch
from megatron.core.transformer.dot_product_attention import DotProductAttention
from megatron.core.transformer.enums import AttnMaskType
from megatron_helpers import assert_log_probs_equal_hf, make_args, make_batch, make_trainer, megatron_model
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

from slime_megatron import attention
from slime_megatron.attention import SDPAttention
from slime_megatron.hf_config import HFModelConfig
from slime_megatron.hf_mapping import gather_hf_state_dict

ARCHS = ("qwen2", "qwen3", "llama")


@pytest.mark.parametrize("arch", ARCHS)
def test_logits_equal_hf_transformers(world, tiny_models, arch):
    hf, model = megatron_model(tiny_models[arch])
    reference = AutoModelForCausalLM.from_pretrained(tiny_models[arch], dtype=torch.float32).eval()
    tokens = torch.randint(0, hf.vocab_size, (3, 11), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours = model(tokens, torch.arange(11).expand(3, 11), None)
        theirs = reference(tokens).logits
    assert ours.shape[-1] == 640  # 600 padded to a multiple of 128
    diff = (ours[..., : hf.vocab_size] - theirs).abs().max().item()
    assert diff < 1e-4, f"{arch}: max |megatron - HF| = {diff}"


def test_sdpa_attention_equals_megatron_unfused_attention_with_gradients(world, tiny_models, monkeypatch):
    """GQA (4 query heads, 2 key/value groups), causal: same output and same gradients as megatron's own path."""
    sdpa_calls = []
    sdpa = attention.F.scaled_dot_product_attention
    monkeypatch.setattr(
        attention.F, "scaled_dot_product_attention", lambda *a, **k: sdpa_calls.append(1) or sdpa(*a, **k)
    )
    hf, model = megatron_model(tiny_models["qwen2"])
    assert all(isinstance(layer.self_attention.core_attention, SDPAttention) for layer in model.decoder.layers)
    config = model.config
    kwargs = {"config": config, "layer_number": 1, "attn_mask_type": AttnMaskType.causal, "attention_type": "self"}
    ours, theirs = SDPAttention(**kwargs), DotProductAttention(**kwargs)
    generator = torch.Generator().manual_seed(0)
    seq, batch, dim = 7, 3, config.kv_channels
    groups = config.num_query_groups
    inputs = [
        torch.randn(seq, batch, heads, dim, generator=generator)
        for heads in (config.num_attention_heads, groups, groups)
    ]
    grads = []
    for module in (ours, theirs):
        leaves = [tensor.clone().requires_grad_() for tensor in inputs]
        output = module(*leaves, attention_mask=None)
        assert output.shape == (seq, batch, config.num_attention_heads * dim)
        output.pow(2).sum().backward()
        grads.append((output.detach(), [leaf.grad for leaf in leaves]))
    assert len(sdpa_calls) == 1  # ours went through SDPA, not megatron's path
    (out_a, grads_a), (out_b, grads_b) = grads
    assert (out_a - out_b).abs().max().item() < 1e-5
    for grad_a, grad_b in zip(grads_a, grads_b, strict=True):
        assert (grad_a - grad_b).abs().max().item() < 1e-4

    # An explicit mask (here: key 0 hidden from every query) is megatron's path, not SDPA's causal one.
    mask = torch.zeros(1, 1, seq, seq, dtype=torch.bool)
    mask[..., 0] = True
    masked = ours(*inputs, attention_mask=mask)
    assert len(sdpa_calls) == 1
    assert torch.equal(masked, theirs(*inputs, attention_mask=mask))
    assert not torch.allclose(masked, ours(*inputs, attention_mask=None))


@pytest.mark.parametrize("arch", ARCHS)
def test_hf_to_megatron_to_hf_round_trips_bit_exactly(world, tiny_models, arch):
    hf, model = megatron_model(tiny_models[arch])
    original = load_file(tiny_models[arch] / "model.safetensors")
    exported = gather_hf_state_dict(model, hf)
    assert sorted(exported) == sorted(original)
    for name, tensor in original.items():
        assert torch.equal(exported[name], tensor), name


def test_unsupported_config_is_refused():
    config = {
        "model_type": "qwen2",
        "num_attention_heads": 4,
        "hidden_size": 64,
        "vocab_size": 8,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
    }
    with pytest.raises(ValueError, match=r"^config.json has no intermediate_size, num_hidden_layers \(the model"):
        HFModelConfig.from_dict(
            {k: v for k, v in config.items() if k not in ("intermediate_size", "num_hidden_layers")}
        )
    with pytest.raises(ValueError, match="rope_type 'yarn' is not supported"):
        HFModelConfig.from_dict({**config, "rope_scaling": {"rope_type": "yarn", "factor": 4.0}})
    with pytest.raises(ValueError, match="model type gpt2 is not supported yet"):
        HFModelConfig.from_dict({**config, "model_type": "gpt2"})


def test_trainer_log_probs_equal_hf_at_the_rollout_temperature(world, tiny_models):
    """Padded micro-batches of different lengths give each sample's own response log-probs."""
    args = make_args(tiny_models["qwen3"], "--micro-batch-size", "2")
    trainer = make_trainer(args)
    batch = make_batch(trainer.hf.vocab_size)
    ours = trainer.compute_log_probs(batch, list(range(len(batch))))
    assert_log_probs_equal_hf(ours, tiny_models["qwen3"], batch)
