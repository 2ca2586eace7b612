import pytest
import torch
from samples import rollout_samples
from torch.utils.flop_counter import FlopCounterMode

from slime.metrics.perf import decoder_fwd_flops, rollout_perf_metrics, train_perf_metrics


def test_rollout_perf_metrics():
    # response lengths sum to 60 (58 trained), the longest is 10; 2 s on 2 GPUs
    assert rollout_perf_metrics(rollout_samples(), rollout_time=2.0, rollout_num_gpus=2) == {
        "perf/rollout_time": 2.0,
        "perf/tokens_per_gpu_per_sec": 15.0,
        "perf/longest_sample_tokens_per_sec": 5.0,
        "perf/effective_tokens_per_gpu_per_sec": 14.5,
        "perf/longest_effective_sample_tokens_per_sec": 5.0,
    }
    assert "perf/tokens_per_gpu_per_sec" not in rollout_perf_metrics(rollout_samples(), 2.0)


def test_train_perf_metrics():
    timings = {"train_wait": 1.0, "train": 3.0, "log_probs": 0.5, "actor_train": 2.0, "update_weights": 0.25}
    metrics = train_perf_metrics(timings, seq_lens=[100, 300], fwd_flops=8e12, num_gpus=2)
    assert metrics == {
        "perf/train_wait_time": 1.0,
        "perf/train_time": 3.0,
        "perf/log_probs_time": 0.5,
        "perf/actor_train_time": 2.0,
        "perf/update_weights_time": 0.25,
        "perf/actor_train_tok_per_s": 200.0,
        "perf/log_probs_tflops": 8.0,  # 4 TFLOP per GPU in 0.5 s
        "perf/actor_train_tflops": 6.0,  # forward + backward = 3 x 4 TFLOP in 2 s
        "perf/step_time": 4.0,
        "perf/wait_time_ratio": 0.25,
    }


def test_dense_decoder_flops_by_hand():
    config = {
        "hidden_size": 8,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "num_key_value_heads": 1,
        "head_dim": 4,
        "intermediate_size": 16,
        "vocab_size": 32,
    }
    s = 3
    q_and_o = 2 * (2 * s * 8 * (2 * 4))  # two 8 -> 8 projections
    k_and_v = 2 * (2 * s * 8 * (1 * 4))  # two 8 -> 4 projections (one KV head)
    attention = 2 * (2 * 2 * s * s * 4) / 2  # QK^T and AV, halved by the causal mask
    mlp = 3 * (2 * s * 8 * 16)
    lm_head = 2 * s * 8 * 32
    assert decoder_fwd_flops(config, [s]) == 2 * (q_and_o + k_and_v + attention + mlp) + lm_head
    assert decoder_fwd_flops(config, [s, s]) == 2 * decoder_fwd_flops(config, [s])


def test_moe_layers_count_their_top_k_experts_and_dense_layers_their_mlp():
    dense = {
        "hidden_size": 8,
        "num_hidden_layers": 3,
        "num_attention_heads": 2,
        "head_dim": 4,
        "intermediate_size": 16,
        "vocab_size": 32,
    }
    # Qwen3-MoE: 4 experts of 6 each, 2 per token; layer 1 dense (mlp_only_layers); transformers 5's field name.
    moe = {
        **dense,
        "num_local_experts": 4,
        "num_experts_per_tok": 2,
        "moe_intermediate_size": 6,
        "mlp_only_layers": [1],
    }
    s = 5
    mlp = lambda ffn: 3 * (2 * s * 8 * ffn)  # noqa: E731
    assert decoder_fwd_flops(moe, [s]) - decoder_fwd_flops(dense, [s]) == 2 * (mlp(2 * 6) - mlp(16))
    shared = {**moe, "shared_expert_intermediate_size": 10}
    assert decoder_fwd_flops(shared, [s]) - decoder_fwd_flops(moe, [s]) == 2 * mlp(10)
    every_other = {**moe, "mlp_only_layers": [], "decoder_sparse_step": 2}  # only layer 1 sparse
    assert decoder_fwd_flops(every_other, [s]) - decoder_fwd_flops(dense, [s]) == mlp(2 * 6) - mlp(16)


def test_dense_decoder_flops_match_a_real_model_forward():
    """torch's FLOP counter on an HF Qwen2 forward counts every matmul; it counts attention without the causal
    half, so it exceeds our count by exactly that half."""
    from transformers import Qwen2Config, Qwen2ForCausalLM  # slow to import: only this test pays for it

    config = Qwen2Config(
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        intermediate_size=128,
        vocab_size=256,
        attn_implementation="eager",
    )
    model = Qwen2ForCausalLM(config).eval()
    seq_len = 16
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, seq_len, dtype=torch.long))
    causal_half = config.num_hidden_layers * 2 * config.num_attention_heads * seq_len**2 * 16
    assert counter.get_total_flops() == decoder_fwd_flops(config, [seq_len]) + causal_half


def test_flops_need_the_config_fields():
    with pytest.raises(ValueError, match="model config lacks intermediate_size, vocab_size"):
        decoder_fwd_flops({"hidden_size": 8, "num_hidden_layers": 1, "num_attention_heads": 2}, [4])
