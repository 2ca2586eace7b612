"""A tiny randomly initialised causal LM (Qwen2, Qwen3, Qwen3-MoE, Llama, GLM4 or GLM-4.5 layout) saved as an HF
model directory.

slime_testkit holds builders like this one because nothing can be downloaded in tests or CI: every model a test, a
backend's CPU mode or the CPU demo needs is built on the spot, from an HF config and a tokenizer trained locally
(`slime_testkit.tokenizer`). The directory looks like a hub checkpoint (config.json, model.safetensors,
generation_config.json, tokenizer files), so `AutoModelForCausalLM`, SGLang and the Megatron weight loader all read
it through their ordinary paths.

Usage::

    from slime_testkit.tiny_model import build_tiny_model
    path = build_tiny_model(tmp_path / "model")  # then AutoModelForCausalLM.from_pretrained(path)
    moe = build_tiny_moe_model(tmp_path / "moe")  # Qwen3-MoE: 4 experts, top-2, one dense layer among three
    glm4 = build_tiny_glm4_model(tmp_path / "glm4")  # GLM4: GLM-4-9B's layout (sandwich norms, half rotary)
    glm45 = build_tiny_glm4_moe_model(tmp_path / "glm45")  # GLM-4.5: shared expert, sigmoid grouped router
"""

from pathlib import Path

from slime_testkit.tokenizer import CHATML_TEMPLATE, ENDOFTEXT, IM_END, build_tokenizer

ARCHS = ("qwen2", "qwen3", "qwen3_moe", "llama", "glm4", "glm4_moe")


def build_tiny_model(
    out_dir: str | Path,
    *,
    hidden_size: int = 64,
    num_layers: int = 2,
    num_heads: int = 4,
    num_kv_heads: int = 2,
    intermediate_size: int | None = None,
    vocab_size: int | None = None,
    tie_word_embeddings: bool = True,
    arch: str = "qwen2",
    seed: int = 0,
    corpus: list[str] | None = None,
    config_extra: dict | None = None,
    chat_template: str = CHATML_TEMPLATE,
) -> Path:
    """Write a tiny fp32 model with its tokenizer to `out_dir` and return `out_dir`.

    `intermediate_size` defaults to 4 x `hidden_size`. `vocab_size=None` makes the embedding exactly as large as the
    tokenizer; a given `vocab_size` is also the tokenizer's training target and may exceed its length (padding rows,
    as real checkpoints have). `config_extra` adds config fields (the experts of `build_tiny_moe_model`). The same
    arguments give byte-identical files.
    """
    if arch not in ARCHS:
        raise ValueError(f"unknown arch {arch!r}: expected one of {', '.join(ARCHS)}")
    # Imported here so that importing slime_testkit stays cheap.
    import torch
    from tokenizers import Tokenizer
    from transformers import AutoConfig, AutoModelForCausalLM, GenerationConfig

    out = Path(out_dir)
    if vocab_size is None:
        build_tokenizer(out, corpus=corpus, chat_template=chat_template)
    else:
        build_tokenizer(out, corpus=corpus, vocab_size=vocab_size, chat_template=chat_template)
    tokenizer = Tokenizer.from_file(str(out / "tokenizer.json"))
    tokenizer_size = tokenizer.get_vocab_size(with_added_tokens=True)
    if vocab_size is not None and vocab_size < tokenizer_size:
        raise ValueError(f"vocab_size {vocab_size} is smaller than the tokenizer ({tokenizer_size} tokens)")
    endoftext, im_end = tokenizer.token_to_id(ENDOFTEXT), tokenizer.token_to_id(IM_END)

    # Qwen3's and GLM4's configs default head_dim to 128 instead of deriving it from hidden_size / num_heads.
    extra = {"head_dim": hidden_size // num_heads} if arch in ("qwen3", "qwen3_moe", "glm4", "glm4_moe") else {}
    extra.update(config_extra or {})
    config = AutoConfig.for_model(
        arch,
        vocab_size=vocab_size or tokenizer_size,
        hidden_size=hidden_size,
        intermediate_size=intermediate_size or 4 * hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_kv_heads,
        tie_word_embeddings=tie_word_embeddings,
        # Token roles as in Qwen2.5-Instruct: <|im_end|> ends a turn, <|endoftext|> is bos and padding.
        bos_token_id=endoftext,
        eos_token_id=im_end,
        pad_token_id=endoftext,
        **extra,
    )
    # A private RNG stream: the weights depend on `seed` alone, and the caller's torch RNG is left untouched.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.generation_config = GenerationConfig(
        bos_token_id=endoftext, eos_token_id=[im_end, endoftext], pad_token_id=endoftext
    )
    model.save_pretrained(out)
    return out


def build_tiny_moe_model(
    out_dir: str | Path,
    *,
    num_experts: int = 4,
    experts_per_token: int = 2,
    moe_intermediate_size: int = 32,
    mlp_only_layers: tuple[int, ...] = (1,),
    decoder_sparse_step: int = 1,
    norm_topk_prob: bool = True,
    num_layers: int = 3,
    **kwargs,
) -> Path:
    """A tiny Qwen3-MoE (`build_tiny_model` with arch qwen3_moe): by default 3 layers, the middle one a dense MLP
    (`mlp_only_layers`), the others 4 experts of which each token uses 2, renormalised as in Qwen3-30B-A3B.
    On disk the experts have per-expert names (`mlp.experts.{i}.gate_proj.weight`), as Qwen's checkpoints do."""
    moe = {
        "num_experts": num_experts,
        "num_experts_per_tok": experts_per_token,
        "moe_intermediate_size": moe_intermediate_size,
        "mlp_only_layers": list(mlp_only_layers),
        "decoder_sparse_step": decoder_sparse_step,
        "norm_topk_prob": norm_topk_prob,
    }
    return build_tiny_model(out_dir, arch="qwen3_moe", num_layers=num_layers, config_extra=moe, **kwargs)


def build_tiny_glm4_model(out_dir: str | Path, *, tie_word_embeddings: bool = False, **kwargs) -> Path:
    """A tiny GLM4 (`build_tiny_model` with arch glm4) in GLM-4-9B's layout: untied output layer, q/k/v biases, RMSNorms
    after attention and after the MLP, interleaved rotary embedding over half of each head (partial_rotary_factor
    0.5), norm epsilon 1e-5. On disk the MLP's input projection is one fused `mlp.gate_up_proj.weight`, as GLM's
    checkpoints have it. The tokenizer and chat template are the other tiny models' (ChatML), not GLM's."""
    glm4 = {"partial_rotary_factor": 0.5, "attention_bias": True, "rms_norm_eps": 1e-5}
    glm4.update(kwargs.pop("config_extra", None) or {})
    return build_tiny_model(out_dir, arch="glm4", tie_word_embeddings=tie_word_embeddings, config_extra=glm4, **kwargs)


def build_tiny_glm4_moe_model(
    out_dir: str | Path,
    *,
    num_experts: int = 8,
    experts_per_token: int = 2,
    moe_intermediate_size: int = 32,
    n_shared_experts: int = 1,
    n_group: int = 2,
    topk_group: int = 1,
    first_k_dense_replace: int = 1,
    routed_scaling_factor: float = 2.5,
    num_layers: int = 3,
    tie_word_embeddings: bool = False,
    **kwargs,
) -> Path:
    """A tiny GLM-4.5 (`build_tiny_model` with arch glm4_moe) in GLM-4.5's layout: the first `first_k_dense_replace`
    layers dense, the others a shared expert plus 8 routed experts of which a sigmoid router (with a per-expert
    score-correction bias) picks 2 from the best of 2 groups, renormalised and scaled by 2.5; q/k norms, q/k/v
    biases, half rotary (not interleaved, unlike GLM4), untied, no sandwich norms. Experts have per-expert names on
    disk, as GLM's checkpoints do."""
    moe = {
        "n_routed_experts": num_experts,
        "num_experts_per_tok": experts_per_token,
        "moe_intermediate_size": moe_intermediate_size,
        "n_shared_experts": n_shared_experts,
        "n_group": n_group,
        "topk_group": topk_group,
        "first_k_dense_replace": first_k_dense_replace,
        "routed_scaling_factor": routed_scaling_factor,
        "norm_topk_prob": True,
        "use_qk_norm": True,
        "attention_bias": True,
        "partial_rotary_factor": 0.5,
        "rms_norm_eps": 1e-5,
    }
    moe.update(kwargs.pop("config_extra", None) or {})
    return build_tiny_model(
        out_dir,
        arch="glm4_moe",
        num_layers=num_layers,
        tie_word_embeddings=tie_word_embeddings,
        config_extra=moe,
        **kwargs,
    )
