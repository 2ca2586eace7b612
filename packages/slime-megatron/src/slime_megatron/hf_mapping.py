"""HF <-> megatron-core weight mapping for Qwen2/Qwen3/Qwen3-MoE/Llama/GLM4/GLM-4.5, sharded for the current TP/PP/EP
layout.

One table (``parameter_mappings``) says, for each parameter of this rank's pipeline stage, which HF tensors it is
made of and how (its ``Layout``). Loading applies a layout forwards on one TP rank's slice; exporting gathers the TP
slices and applies it backwards, giving HF names and layouts. The same export feeds weight sync to rollout engines,
``--save-hf`` and ``megatron-to-hf`` conversion.

Experts keep HF's per-expert names (``mlp.experts.{i}.gate_proj.weight``, as checkpoints on disk and SGLang name
them; transformers 5 fuses them in memory only). Each expert lives whole on one expert-parallel rank: rank ``r`` of
``EP`` holds experts ``r * E/EP ..``; export gathers them over the expert-parallel group instead of TP. A shared
expert (GLM-4.5) is split over TP like a dense MLP. GLM-4.5's router bias (``e_score_correction_bias``) is a buffer in
megatron-core (``expert_bias``, moved by its aux-loss-free balancing, not by gradients), mapped like a parameter.
"""

import json
from collections.abc import Iterator
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

import torch
import torch.distributed as dist
from megatron.core import parallel_state
from safetensors import safe_open

from slime_megatron.hf_config import HFModelConfig
from slime_megatron.model import ValueHead, unwrap_model


class Layout(Enum):
    """How the HF tensors of one parameter make the megatron tensor, and how tensor parallelism splits it."""

    REPLICATED = "replicated"  # norms: the same tensor on every TP rank
    ROW = "row"  # split along dim 1 (input features): attention output, MLP down projection
    VOCAB = "vocab"  # embedding / output rows, padded to the padded vocabulary, split along dim 0
    QKV = "qkv"  # q, k, v interleaved per key/value group ([q heads of group g, k_g, v_g] for each g), dim 0
    GATE_UP = "gate_up"  # each TP rank holds [its slice of gate; its slice of up]
    FUSED_GATE_UP = "fused_gate_up"  # GATE_UP from one HF tensor [gate; up] (GLM4's mlp.gate_up_proj)


@dataclass(frozen=True)
class ParamMapping:
    megatron_name: str  # in this rank's (unwrapped) GPTModel
    hf_names: tuple[str, ...]
    layout: Layout
    exported: bool = True  # False for the last stage's copy of tied embeddings (exported by the first stage)
    # An expert's parameter: for each expert-parallel rank, the HF names of the expert it holds at this local index
    # (``hf_names`` is this rank's entry). Whole on each rank: no tensor-parallel split.
    ep_names: tuple[tuple[str, ...], ...] = ()


def _expert_mappings(m: str, h: str, hf: HFModelConfig, ep_rank: int, ep_size: int) -> list[ParamMapping]:
    """Router and experts of one MoE layer (``m``, ``h``: its megatron and HF name prefixes)."""
    mappings = [ParamMapping(m + "mlp.router.weight", (h + "mlp.gate.weight",), Layout.REPLICATED)]
    if hf.expert_bias:
        bias = (h + "mlp.gate.e_score_correction_bias",)
        mappings.append(ParamMapping(m + "mlp.router.expert_bias", bias, Layout.REPLICATED))
    if hf.shared_expert_intermediate_size:
        mappings += _mlp_mappings(m + "mlp.shared_experts.", h + "mlp.shared_experts.")
    per_rank = hf.num_experts // ep_size
    for local in range(per_rank):
        experts = [f"{h}mlp.experts.{rank * per_rank + local}." for rank in range(ep_size)]
        fc1 = tuple((e + "gate_proj.weight", e + "up_proj.weight") for e in experts)
        fc2 = tuple((e + "down_proj.weight",) for e in experts)
        megatron = f"{m}mlp.experts.local_experts.{local}."
        mappings += [
            ParamMapping(megatron + "linear_fc1.weight", fc1[ep_rank], Layout.GATE_UP, ep_names=fc1),
            ParamMapping(megatron + "linear_fc2.weight", fc2[ep_rank], Layout.ROW, ep_names=fc2),
        ]
    return mappings


def _mlp_mappings(m: str, h: str) -> list[ParamMapping]:
    """A SwiGLU MLP with separate gate and up projections on disk (``m``, ``h``: its megatron and HF prefixes)."""
    return [
        ParamMapping(m + "linear_fc1.weight", (h + "gate_proj.weight", h + "up_proj.weight"), Layout.GATE_UP),
        ParamMapping(m + "linear_fc2.weight", (h + "down_proj.weight",), Layout.ROW),
    ]


def parameter_mappings(
    hf: HFModelConfig,
    *,
    pre_process: bool,
    post_process: bool,
    layer_offset: int,
    num_layers: int,
    ep_rank: int = 0,
    ep_size: int = 1,
):
    """The mapping of every parameter of one pipeline stage holding layers ``layer_offset .. + num_layers`` (and
    the experts of expert-parallel rank ``ep_rank``)."""
    mappings: list[ParamMapping] = []
    if pre_process:
        mappings.append(ParamMapping("embedding.word_embeddings.weight", ("model.embed_tokens.weight",), Layout.VOCAB))
    for local in range(num_layers):
        m, h = f"decoder.layers.{local}.", f"model.layers.{layer_offset + local}."
        attn = h + "self_attn."
        mappings += [
            ParamMapping(m + "input_layernorm.weight", (h + "input_layernorm.weight",), Layout.REPLICATED),
            ParamMapping(
                m + "self_attention.linear_qkv.weight",
                (attn + "q_proj.weight", attn + "k_proj.weight", attn + "v_proj.weight"),
                Layout.QKV,
            ),
            ParamMapping(m + "self_attention.linear_proj.weight", (attn + "o_proj.weight",), Layout.ROW),
            ParamMapping(m + "pre_mlp_layernorm.weight", (h + "post_attention_layernorm.weight",), Layout.REPLICATED),
        ]
        if hf.moe_layers and hf.moe_layers[layer_offset + local]:
            mappings += _expert_mappings(m, h, hf, ep_rank, ep_size)
        elif hf.glm:
            mappings += [
                ParamMapping(m + "mlp.linear_fc1.weight", (h + "mlp.gate_up_proj.weight",), Layout.FUSED_GATE_UP),
                ParamMapping(m + "mlp.linear_fc2.weight", (h + "mlp.down_proj.weight",), Layout.ROW),
                # Same names on both sides (slime's patched Megatron-LM names them as HF does).
                ParamMapping(
                    m + "post_self_attn_layernorm.weight", (h + "post_self_attn_layernorm.weight",), Layout.REPLICATED
                ),
                ParamMapping(m + "post_mlp_layernorm.weight", (h + "post_mlp_layernorm.weight",), Layout.REPLICATED),
            ]
        else:
            mappings += _mlp_mappings(m + "mlp.", h + "mlp.")
        if hf.qkv_bias:
            names = (attn + "q_proj.bias", attn + "k_proj.bias", attn + "v_proj.bias")
            mappings.append(ParamMapping(m + "self_attention.linear_qkv.bias", names, Layout.QKV))
        if hf.qk_norm:
            mappings += [
                ParamMapping(m + "self_attention.q_layernorm.weight", (attn + "q_norm.weight",), Layout.REPLICATED),
                ParamMapping(m + "self_attention.k_layernorm.weight", (attn + "k_norm.weight",), Layout.REPLICATED),
            ]
    if post_process:
        mappings.append(ParamMapping("decoder.final_layernorm.weight", ("model.norm.weight",), Layout.REPLICATED))
        if not hf.tie_word_embeddings:
            mappings.append(ParamMapping("output_layer.weight", ("lm_head.weight",), Layout.VOCAB))
        elif not pre_process:
            # Tied embeddings across pipeline stages: the last stage keeps its own copy of the embedding.
            mappings.append(
                ParamMapping("output_layer.weight", ("model.embed_tokens.weight",), Layout.VOCAB, exported=False)
            )
    return mappings


def stage_mappings(hf: HFModelConfig) -> list[ParamMapping]:
    """``parameter_mappings`` of this rank's pipeline stage (``parallel_state`` must be initialised)."""
    pp_size = parallel_state.get_pipeline_model_parallel_world_size()
    per_stage = hf.num_layers // pp_size
    return parameter_mappings(
        hf,
        pre_process=parallel_state.is_pipeline_first_stage(),
        post_process=parallel_state.is_pipeline_last_stage(),
        layer_offset=parallel_state.get_pipeline_model_parallel_rank() * per_stage,
        num_layers=per_stage,
        ep_rank=parallel_state.get_expert_model_parallel_rank(),
        ep_size=parallel_state.get_expert_model_parallel_world_size(),
    )


def _interleave_qkv(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, hf: HFModelConfig) -> torch.Tensor:
    groups, d = hf.num_kv_heads, hf.head_dim
    rest = q.shape[1:]
    q = q.reshape(groups, (hf.num_heads // groups) * d, *rest)
    k = k.reshape(groups, d, *rest)
    v = v.reshape(groups, d, *rest)
    return torch.cat([q, k, v], dim=1).reshape(-1, *rest)


def _split_qkv(qkv: torch.Tensor, hf: HFModelConfig) -> list[torch.Tensor]:
    groups, d = hf.num_kv_heads, hf.head_dim
    rest = qkv.shape[1:]
    per_group = qkv.reshape(groups, -1, *rest)
    q, k, v = per_group.split([(hf.num_heads // groups) * d, d, d], dim=1)
    return [q.reshape(-1, *rest), k.reshape(-1, *rest), v.reshape(-1, *rest)]


def to_megatron(
    layout: Layout, hf_tensors: list[torch.Tensor], hf: HFModelConfig, tp_rank: int, tp_size: int
) -> torch.Tensor:
    """The TP rank's slice of the megatron parameter made of ``hf_tensors``."""
    if layout is Layout.REPLICATED:
        return hf_tensors[0]
    if layout is Layout.ROW:
        return hf_tensors[0].chunk(tp_size, dim=1)[tp_rank]
    if layout is Layout.VOCAB:
        weight = hf_tensors[0]
        padded = weight.new_zeros(hf.padded_vocab_size(tp_size), *weight.shape[1:])
        padded[: weight.shape[0]] = weight
        return padded.chunk(tp_size, dim=0)[tp_rank]
    if layout is Layout.QKV:
        # Whole key/value groups per rank, so a contiguous split of the interleaved tensor is right.
        return _interleave_qkv(*hf_tensors, hf).chunk(tp_size, dim=0)[tp_rank]
    if layout in (Layout.GATE_UP, Layout.FUSED_GATE_UP):
        gate, up = hf_tensors if layout is Layout.GATE_UP else hf_tensors[0].chunk(2, dim=0)
        return torch.cat([gate.chunk(tp_size, dim=0)[tp_rank], up.chunk(tp_size, dim=0)[tp_rank]], dim=0)
    raise ValueError(f"unknown layout {layout}")


def to_hf(layout: Layout, shards: list[torch.Tensor], hf: HFModelConfig) -> list[torch.Tensor]:
    """The HF tensors of one parameter from its slices on every TP rank (in rank order)."""
    if layout is Layout.REPLICATED:
        return [shards[0]]
    if layout is Layout.ROW:
        return [torch.cat(shards, dim=1)]
    if layout is Layout.VOCAB:
        return [torch.cat(shards, dim=0)[: hf.vocab_size]]
    if layout is Layout.QKV:
        return _split_qkv(torch.cat(shards, dim=0), hf)
    if layout in (Layout.GATE_UP, Layout.FUSED_GATE_UP):
        halves = [shard.chunk(2, dim=0) for shard in shards]
        gate_up = [torch.cat([g for g, _ in halves], dim=0), torch.cat([u for _, u in halves], dim=0)]
        return gate_up if layout is Layout.GATE_UP else [torch.cat(gate_up, dim=0)]
    raise ValueError(f"unknown layout {layout}")


class HFCheckpointReader:
    """Reads tensors by name from an HF model directory (one ``model.safetensors`` or an index of shards)."""

    def __init__(self, hf_dir: str | Path) -> None:
        self.dir = Path(hf_dir)
        index = self.dir / "model.safetensors.index.json"
        if index.exists():
            self.files = {name: file for name, file in json.loads(index.read_text())["weight_map"].items()}
        elif (self.dir / "model.safetensors").exists():
            with safe_open(self.dir / "model.safetensors", framework="pt") as f:
                self.files = {name: "model.safetensors" for name in f.keys()}
        else:
            raise FileNotFoundError(f"{self.dir} has no model.safetensors or model.safetensors.index.json")

    def get(self, name: str) -> torch.Tensor:
        if name not in self.files:
            raise KeyError(f"{self.dir} has no tensor {name!r}")
        with safe_open(self.dir / self.files[name], framework="pt") as f:
            return f.get_tensor(name)


def mapped_tensors(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """This rank's parameters and the buffers an HF checkpoint also holds (the routers' expert biases), by megatron
    name: what loading, exporting and swapping weights (reference model, old actor) cover."""
    unwrapped = unwrap_model(model)
    tensors = dict(unwrapped.named_parameters())
    tensors.update((name, b) for name, b in unwrapped.named_buffers() if name.endswith(".router.expert_bias"))
    return tensors


def hf_shards(model: torch.nn.Module, hf: HFModelConfig, hf_dir: str | Path) -> dict[str, torch.Tensor]:
    """This rank's slice of every parameter of ``model``, from the HF checkpoint at ``hf_dir``, by megatron name."""
    reader = HFCheckpointReader(hf_dir)
    params = mapped_tensors(model)
    tp_rank = parallel_state.get_tensor_model_parallel_rank()
    tp_size = parallel_state.get_tensor_model_parallel_world_size()
    mappings = stage_mappings(hf)
    if isinstance(getattr(unwrap_model(model), "output_layer", None), ValueHead):
        # PPO's critic: the checkpoint's language-model head is not its head; the value head starts fresh.
        params = {name: p for name, p in params.items() if not name.startswith("output_layer.")}
        mappings = [m for m in mappings if not m.megatron_name.startswith("output_layer.")]
    missing = sorted(set(params) - {m.megatron_name for m in mappings})
    if missing:
        raise RuntimeError(f"no HF mapping for megatron parameters {missing}")
    shards = {}
    for mapping in mappings:
        rank, size = (0, 1) if mapping.ep_names else (tp_rank, tp_size)  # experts are whole on their rank
        value = to_megatron(mapping.layout, [reader.get(n) for n in mapping.hf_names], hf, rank, size)
        expected = params[mapping.megatron_name].shape
        if value.shape != expected:
            raise RuntimeError(
                f"{mapping.megatron_name}: HF {mapping.hf_names} give shape {tuple(value.shape)}, "
                f"the model expects {tuple(expected)}"
            )
        shards[mapping.megatron_name] = value
    return shards


@torch.no_grad()
def copy_weights(model: torch.nn.Module, weights: dict[str, torch.Tensor]) -> None:
    """Copy ``weights`` (megatron names, this rank's slices) into ``model``'s parameters and expert biases, in place."""
    params = mapped_tensors(model)
    for name, value in weights.items():
        params[name].copy_(value)


@torch.no_grad()
def snapshot_weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A CPU copy of this rank's parameters and expert biases, by megatron name (e.g. the reference model's weights)."""
    return {name: tensor.detach().to("cpu", copy=True) for name, tensor in mapped_tensors(model).items()}


def load_hf_weights(model: torch.nn.Module, hf: HFModelConfig, hf_dir: str | Path) -> None:
    """Copy this rank's slice of every parameter from the HF checkpoint at ``hf_dir`` into ``model``."""
    copy_weights(model, hf_shards(model, hf, hf_dir))


@torch.no_grad()
def export_hf_weights(model: torch.nn.Module, hf: HFModelConfig) -> Iterator[tuple[str, torch.Tensor]]:
    """This pipeline stage's weights as HF ``(name, tensor)`` pairs, whole (gathered over TP, experts over EP), on CPU.

    Every TP and EP rank of the stage must iterate it (the gathers are collective); every one gets the same tensors.
    """
    params = mapped_tensors(model)
    group = parallel_state.get_tensor_model_parallel_group()
    tp_size = parallel_state.get_tensor_model_parallel_world_size()
    ep_size = parallel_state.get_expert_model_parallel_world_size()
    for mapping in stage_mappings(hf):
        if not mapping.exported:
            continue
        local = params[mapping.megatron_name].detach()
        if mapping.ep_names:
            yield from _gathered_expert(mapping, local, hf, ep_size)
            continue
        if mapping.layout is Layout.REPLICATED or tp_size == 1:
            shards = [local]
        else:
            shards = [torch.empty_like(local) for _ in range(tp_size)]
            dist.all_gather(shards, local.contiguous(), group=group)
        for name, tensor in zip(mapping.hf_names, to_hf(mapping.layout, shards, hf), strict=True):
            yield name, tensor.cpu().contiguous()


def _gathered_expert(
    mapping: ParamMapping, local: torch.Tensor, hf: HFModelConfig, ep_size: int
) -> Iterator[tuple[str, torch.Tensor]]:
    """One local expert parameter of every expert-parallel rank, under each one's HF names."""
    if ep_size == 1:
        shards = [local]
    else:
        shards = [torch.empty_like(local) for _ in range(ep_size)]
        dist.all_gather(shards, local.contiguous(), group=parallel_state.get_expert_model_parallel_group())
    for names, shard in zip(mapping.ep_names, shards, strict=True):
        for name, tensor in zip(names, to_hf(mapping.layout, [shard], hf), strict=True):
            yield name, tensor.cpu().contiguous()


def gather_hf_state_dict(model: torch.nn.Module, hf: HFModelConfig) -> dict[str, torch.Tensor] | None:
    """The whole model's HF state dict on global rank 0 (``None`` elsewhere); every rank must call it.

    Rank 0's own tensors may share memory with the model's parameters (no copy): use them before the next
    optimizer step, or clone them.
    """
    stage = dict(export_hf_weights(model, hf))
    if parallel_state.get_pipeline_model_parallel_world_size() == 1:
        # Rank 0's stage is the whole model: no collective, and rank 0 never pickles its own weights through
        # gather_object (a 54 MB round trip per update at issue 23's 10M model on CPU).
        return stage if dist.get_rank() == 0 else None
    # One rank per later stage contributes: data-parallel and tensor-parallel peers hold the same tensors.
    is_sender = parallel_state.get_data_parallel_rank() == 0 and parallel_state.get_tensor_model_parallel_rank() == 0
    rank = dist.get_rank()
    parts: list | None = [None] * dist.get_world_size() if rank == 0 else None
    dist.gather_object(stage if is_sender and rank != 0 else None, parts, dst=0)
    if parts is None:
        return None
    for part in parts:
        stage.update(part or {})
    return stage
