"""The registered ``megatron`` train backend through slime's protocol, its flags, and the CPU layer's version pin."""

import importlib.metadata

import pytest
import torch
from megatron_helpers import make_args, make_batch
from safetensors.torch import load_file

from slime import plugins
from slime.config.arguments import parse_args
from slime.errors import ConfigError
from slime_megatron import cpu_compat
from slime_megatron.backend import MegatronTrainBackend


class RecordingReceiver:
    """Stands in for a rollout engine's receiver: keeps what it was sent."""

    def __init__(self) -> None:
        self.updates: list[tuple[str, dict[str, torch.Tensor]]] = []

    def update_weights(self, named_tensors, weight_version: str) -> None:
        self.updates.append((weight_version, {name: tensor.clone() for name, tensor in named_tensors}))


def test_backend_trains_saves_resumes_and_sends_hf_weights(world, tiny_models, tmp_path):
    assert plugins.registry("train_backends").get("megatron") is MegatronTrainBackend
    hf_dir = tiny_models["qwen2"]
    args = make_args(hf_dir, "--save", str(tmp_path / "ckpt"), "--save-hf", str(tmp_path / "hf_{rollout_id}"))
    backend = MegatronTrainBackend()
    assert backend.init(args, rank=0, world_size=1) == 0

    receiver = RecordingReceiver()
    backend.update_weights(receiver, "0")
    original = load_file(hf_dir / "model.safetensors")
    version, sent = receiver.updates[0]
    assert version == "0" and sorted(sent) == sorted(original)
    assert all(torch.equal(sent[name], original[name]) for name in original)

    steps = backend.train(0, make_batch(600))
    assert len(steps) == 2 and {"loss", "pg_loss", "ppo_kl", "kl_loss", "grad_norm", "lr-pg_0"} <= set(steps[0])
    assert backend.rollout_metrics()["perf/actor_train_tok_per_s"] > 0
    backend.update_weights(receiver, "1")
    assert not torch.equal(receiver.updates[1][1]["model.norm.weight"], original["model.norm.weight"])
    backend.save(0)
    saved_hf = load_file(tmp_path / "hf_0" / "model.safetensors")  # --save-hf: the trained weights, as HF
    assert all(torch.equal(saved_hf[name], receiver.updates[1][1][name]) for name in original)
    assert (tmp_path / "hf_0" / "config.json").exists()

    resumed = MegatronTrainBackend()
    assert resumed.init(make_args(hf_dir, "--load", str(tmp_path / "ckpt")), rank=0, world_size=1) == 1
    resumed.update_weights(receiver, "2")
    assert all(torch.equal(receiver.updates[2][1][name], receiver.updates[1][1][name]) for name in original)


def test_flags_are_checked():
    base = ["--train-backend", "megatron", "--actor-num-gpus-per-node", "8"]
    with pytest.raises(ConfigError, match=r"\(8\) is not divisible by .* \(3\)"):
        parse_args([*base, "--tensor-model-parallel-size", "3"])
    with pytest.raises(ConfigError, match=r"--min-lr \(0.1\) must be <= --lr \(0.01\)"):
        parse_args([*base, "--lr", "0.01", "--min-lr", "0.1"])
    args = parse_args([*base, "--tensor-model-parallel-size", "2", "--lr-decay-style", "cosine"])
    assert (args.tensor_model_parallel_size, args.lr_decay_style, args.clip_grad) == (2, "cosine", 1.0)


def test_cpu_layer_refuses_another_megatron_core(monkeypatch):
    monkeypatch.setattr(importlib.metadata, "version", lambda name: "0.20.0")
    with pytest.raises(RuntimeError, match=r"patches megatron-core 0.19.2 internals, but megatron-core 0.20.0"):
        cpu_compat.check_version()
