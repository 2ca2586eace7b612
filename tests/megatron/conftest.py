"""Shared by the megatron backend's tests: CPU mode, one single-process world, the helpers module on sys.path."""

import sys
from pathlib import Path

import pytest
import torch

# megatron_helpers.py and parallel_worker.py live next to the tests; subprocess workers import them the same way.
sys.path.insert(0, str(Path(__file__).parent))

if not torch.cuda.is_available():
    from slime_megatron import cpu_compat

    cpu_compat.enable()  # before any megatron-core model module is imported

import megatron_helpers  # noqa: E402


@pytest.fixture(scope="module")
def world():
    """A gloo process group of one process for in-process tests; parallel layouts are (re)set per test.

    Per module, so that no process group outlives these tests in a pytest process shared with other packages' tests.
    """
    megatron_helpers.init_single_process_world()
    yield
    megatron_helpers.destroy_world()


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> dict[str, Path]:
    """Tiny Qwen2 (tied), Qwen3 (tied) and Llama (untied) checkpoints with every tensor randomised."""
    root = tmp_path_factory.mktemp("models")
    return {arch: megatron_helpers.build_random_model(root / arch, arch) for arch in ("qwen2", "qwen3", "llama")}


@pytest.fixture(scope="session")
def tiny_moe_model(tmp_path_factory) -> Path:
    """A tiny Qwen3-MoE (4 experts, top-2, renormalised; every layer sparse, as SGLang serves it), every tensor
    randomised."""
    path = tmp_path_factory.mktemp("models") / "qwen3_moe"
    return megatron_helpers.build_random_model(path, "qwen3_moe", mlp_only_layers=())


@pytest.fixture(scope="session")
def tiny_glm4_model(tmp_path_factory) -> Path:
    """A tiny GLM4 (untied, q/k/v biases, post-attention and post-MLP norms, half rotary), every tensor randomised."""
    return megatron_helpers.build_random_model(tmp_path_factory.mktemp("models") / "glm4", "glm4")
