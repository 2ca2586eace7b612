"""``perf/*`` metrics: rollout throughput and the trainer's phase timings, throughput and TFLOPs (as slime)."""

from collections.abc import Mapping, Sequence
from typing import Any

from slime.model_config import config_value, moe_layer_pattern, num_experts, shared_expert_size
from slime.types import Sample


def rollout_perf_metrics(
    samples: Sequence[Sample],
    rollout_time: float,
    rollout_num_gpus: int | None = None,
    trained: Sequence[int] | None = None,
) -> dict[str, float]:
    """How fast one rollout generated: ``perf/rollout_time``, tokens per GPU per second, the longest sample's speed.

    ``effective_`` variants count only trained (mask-1) tokens (``trained``: their counts, when already computed).
    Per-GPU throughput needs ``rollout_num_gpus``.
    """
    metrics = {"perf/rollout_time": rollout_time}
    if rollout_time <= 0 or not samples:
        return metrics
    for prefix, lengths in (
        ("", [s.response_length for s in samples]),
        ("effective_", trained if trained is not None else [s.effective_response_length for s in samples]),
    ):
        if rollout_num_gpus:
            metrics[f"perf/{prefix}tokens_per_gpu_per_sec"] = sum(lengths) / rollout_time / rollout_num_gpus
        metrics[f"perf/longest_{prefix}sample_tokens_per_sec"] = max(lengths) / rollout_time
    return metrics


def decoder_fwd_flops(config: Mapping[str, Any] | Any, seq_lens: Sequence[int]) -> float:
    """Forward-pass FLOPs of a decoder-only transformer (an HF config: dict or object) over sequences, as slime counts.

    Per layer and sequence of length s: Q/K/V/O projections (grouped-query K/V), causal attention (half of the
    s x s scores, for QK^T and for AV), a gated MLP (gate, up, down); plus the LM head. In an MoE layer the MLP is
    each token's top-k experts (``moe_intermediate_size`` each) plus the shared expert if any; the router is not
    counted. A multiply-add is 2 FLOPs. Embedding look-ups and norms are ignored, as in slime's count.
    """
    hidden = config_value(config, "hidden_size")
    layers = config_value(config, "num_hidden_layers")
    heads = config_value(config, "num_attention_heads")
    ffn = config_value(config, "intermediate_size")
    vocab = config_value(config, "vocab_size")
    missing = [
        name
        for name, value in (
            ("hidden_size", hidden),
            ("num_hidden_layers", layers),
            ("num_attention_heads", heads),
            ("intermediate_size", ffn),
            ("vocab_size", vocab),
        )
        if value is None
    ]
    if missing:
        raise ValueError(f"model config lacks {', '.join(missing)} (needed to count FLOPs)")
    kv_heads = config_value(config, "num_key_value_heads") or heads
    head_dim = config_value(config, "head_dim") or hidden // heads
    layer_ffns = [ffn] * layers
    if num_experts(config):
        moe_ffn = config_value(config, "moe_intermediate_size") * config_value(config, "num_experts_per_tok")
        moe_ffn += shared_expert_size(config)
        layer_ffns = [moe_ffn if sparse else ffn for sparse in moe_layer_pattern(config)]

    total = 0.0
    for s in seq_lens:
        projections = 2 * s * hidden * head_dim * (2 * heads + 2 * kv_heads)  # Q and O: heads; K and V: kv_heads
        attention = 2 * heads * s * s * head_dim  # QK^T and AV, each 2*h*s*s*d halved by the causal mask
        mlps = sum(3 * 2 * s * hidden * layer_ffn for layer_ffn in layer_ffns)
        total += layers * (projections + attention) + mlps + 2 * s * hidden * vocab
    return total


def train_perf_metrics(
    timings: Mapping[str, float],
    *,
    seq_lens: Sequence[int] | None = None,
    fwd_flops: float | None = None,
    num_gpus: int = 1,
) -> dict[str, float]:
    """The trainer's ``perf/*`` of one rollout, from phase timings in seconds.

    ``timings`` names phases as slime's timers do (``train_wait``, ``train``, ``data_preprocess``, ``log_probs``,
    ``ref_log_probs``, ``actor_train``, ``update_weights``, ``save_model``, ...): each becomes ``perf/<name>_time``.
    With the rollout's ``seq_lens`` (prompt + response tokens per sample) come ``actor_train_tok_per_s``, and with
    its forward FLOPs (``decoder_fwd_flops``) TFLOPs per GPU: ``log_probs_tflops``, ``ref_log_probs_tflops``,
    ``actor_train_tflops`` (forward + backward = 3 forwards). ``step_time`` = ``train_wait`` + ``train``, and
    ``wait_time_ratio`` is the share of it spent waiting for the rollout.
    """
    metrics = {f"perf/{name}_time": float(seconds) for name, seconds in timings.items()}
    actor_train = timings.get("actor_train")
    if seq_lens is not None and actor_train:
        metrics["perf/actor_train_tok_per_s"] = sum(seq_lens) / actor_train
    if fwd_flops is not None:
        tflops_per_gpu = fwd_flops / num_gpus / 1e12
        for name in ("log_probs", "ref_log_probs"):
            if timings.get(name):
                metrics[f"perf/{name}_tflops"] = tflops_per_gpu / timings[name]
        if actor_train:
            metrics["perf/actor_train_tflops"] = 3 * tflops_per_gpu / actor_train
    if "train_wait" in timings and "train" in timings:
        step_time = timings["train_wait"] + timings["train"]
        if step_time > 0:
            metrics["perf/step_time"] = step_time
            metrics["perf/wait_time_ratio"] = timings["train_wait"] / step_time
    return metrics
