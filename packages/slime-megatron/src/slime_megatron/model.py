"""An HF causal-LM config (Qwen2, Qwen3, Llama) as a megatron-core ``GPTModel``: local layer spec, SDPA attention."""

import torch
import torch.nn.functional as F
from megatron.core import parallel_state
from megatron.core.models.gpt import GPTModel
from megatron.core.models.gpt.gpt_layer_specs import get_gpt_layer_local_spec
from megatron.core.transformer import TransformerConfig

from slime_megatron.attention import SDPAttention
from slime_megatron.hf_config import HFModelConfig


def transformer_config(
    hf: HFModelConfig,
    *,
    tp_size: int = 1,
    pp_size: int = 1,
    dtype: torch.dtype = torch.float32,
    on_cpu: bool = False,
) -> TransformerConfig:
    """The megatron-core config of ``hf``'s architecture for a TP/PP layout, computing in ``dtype``."""
    if hf.num_kv_heads % tp_size:
        raise ValueError(f"{hf.num_kv_heads} key/value heads cannot be split over tensor-parallel size {tp_size}")
    if hf.num_layers % pp_size:
        raise ValueError(f"{hf.num_layers} layers cannot be split over pipeline-parallel size {pp_size}")
    return TransformerConfig(
        num_layers=hf.num_layers,
        hidden_size=hf.hidden_size,
        ffn_hidden_size=hf.intermediate_size,
        num_attention_heads=hf.num_heads,
        num_query_groups=hf.num_kv_heads,
        kv_channels=hf.head_dim,
        normalization="RMSNorm",
        layernorm_epsilon=hf.rms_norm_eps,
        gated_linear_unit=True,  # SwiGLU: silu(gate) * up
        activation_func=F.silu,
        add_bias_linear=False,
        add_qkv_bias=hf.qkv_bias,
        qk_layernorm=hf.qk_norm,
        hidden_dropout=0.0,
        attention_dropout=0.0,
        # Fused kernels are CUDA-only; the unfused paths compute the same functions.
        bias_activation_fusion=False,
        masked_softmax_fusion=False,
        bias_dropout_fusion=False,
        apply_rope_fusion=False,
        gradient_accumulation_fusion=False,
        persist_layer_norm=False,
        tensor_model_parallel_size=tp_size,
        pipeline_model_parallel_size=pp_size,
        # Micro-batches differ in length (and, by token budget, in samples): stages exchange shapes first.
        variable_seq_lengths=pp_size > 1,
        # Only MoE reads the dispatcher; the default ("allgather") refuses variable sequence lengths.
        moe_token_dispatcher_type="alltoall",
        params_dtype=dtype,
        pipeline_dtype=dtype,
        bf16=dtype == torch.bfloat16,
        fp16=dtype == torch.float16,
        # Weights always come from a checkpoint (every parameter is mapped): skip random initialisation. CPU
        # initialisation keeps the CPU run off megatron's CUDA init path.
        perform_initialization=False,
        use_cpu_initialization=on_cpu,
    )


def build_gpt_model(hf: HFModelConfig, config: TransformerConfig) -> GPTModel:
    """This rank's pipeline stage of the model (``parallel_state`` must be initialised)."""
    pre_process = parallel_state.is_pipeline_first_stage()
    post_process = parallel_state.is_pipeline_last_stage()
    spec = get_gpt_layer_local_spec(qk_layernorm=hf.qk_norm, normalization="RMSNorm")
    spec.submodules.self_attention.submodules.core_attention = SDPAttention
    model = GPTModel(
        config=config,
        transformer_layer_spec=spec,
        vocab_size=hf.padded_vocab_size(config.tensor_model_parallel_size),
        max_sequence_length=hf.max_position_embeddings,
        pre_process=pre_process,
        post_process=post_process,
        # Each TP rank keeps its slice of the vocabulary; log-probs are assembled across slices (logprobs.py).
        parallel_output=True,
        share_embeddings_and_output_weights=hf.tie_word_embeddings,
        position_embedding_type="rope",
        rotary_base=hf.rope_theta,
    )
    return model


def unwrap_model(model: torch.nn.Module) -> GPTModel:
    """The ``GPTModel`` inside megatron's DDP and Float16Module wrappers."""
    while not isinstance(model, GPTModel):
        model = model.module
    return model
