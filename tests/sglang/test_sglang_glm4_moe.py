"""A GLM-4.5 (glm4_moe: shared expert, sigmoid router with a score-correction bias, grouped top-k, dense first
layer) served by a real SGLang CPU engine: greedy output equals HF's token for token, and a weight update under the
checkpoint's per-expert names (what the megatron backend exports: tests/megatron/test_megatron_glm4_moe.py) changes
it to exactly HF's with the new weights, the routers' biases included.

One engine of its own for this module (the shared deployment serves a Qwen2), started once.
"""

import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from slime_testkit.tiny_model import build_tiny_glm4_moe_model

sys.path.insert(0, str(Path(__file__).parent))
from engine_checks import PROMPTS, check_engine_matches, one_cpu_engine, perturbed  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def glm4_moe_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_glm4_moe_model(tmp_path_factory.mktemp("sglang-glm4-moe") / "model", seed=0)


@pytest.fixture(scope="module")
def glm4_moe_engine(glm4_moe_model: Path, tmp_path_factory: pytest.TempPathFactory):
    with one_cpu_engine(glm4_moe_model, tmp_path_factory.mktemp("sglang-glm4-moe-run")) as engine:
        yield engine


def _move_biases(model, generator: torch.Generator) -> list[tuple[str, torch.Tensor]]:
    """New random values for every router's score-correction bias (a buffer, which perturbed() leaves alone), large
    enough to change which experts are chosen; returned under their checkpoint names."""
    moved = []
    for name, bias in model.named_buffers():
        if name.endswith("e_score_correction_bias"):
            bias.copy_(torch.randn(bias.shape, generator=generator) * 0.5)
            moved.append((name, bias.clone()))
    return moved


def test_glm4_moe_greedy_output_equals_hf_and_a_weight_update_takes_effect(
    glm4_moe_engine, hf_greedy, glm4_moe_model: Path, tmp_path: Path
) -> None:
    from transformers import AutoModelForCausalLM

    hf = AutoModelForCausalLM.from_pretrained(glm4_moe_model, dtype=torch.float32).eval()
    assert type(hf).__name__ == "Glm4MoeForCausalLM"
    check_engine_matches(glm4_moe_engine, hf, hf_greedy)

    new_model = perturbed(hf, seed=1)
    generator = torch.Generator().manual_seed(2)
    _move_biases(new_model, generator)
    assert hf_greedy(new_model, PROMPTS[0], 8)[0] != hf_greedy(hf, PROMPTS[0], 8)[0]  # the test can tell
    new_model.save_pretrained(tmp_path / "new")
    named = sorted(load_file(tmp_path / "new" / "model.safetensors").items())
    assert {"model.layers.1.mlp.experts.7.gate_proj.weight", "model.layers.1.mlp.gate.e_score_correction_bias"} <= set(
        dict(named)
    )
    glm4_moe_engine.weight_receiver().update_weights(named, "1")
    check_engine_matches(glm4_moe_engine, new_model, hf_greedy)

    # The biases alone, under their own names: the engine's choice of experts follows them.
    with_old_biases = hf_greedy(new_model, PROMPTS[0], 8)[0]
    biases = _move_biases(new_model, generator)
    assert hf_greedy(new_model, PROMPTS[0], 8)[0] != with_old_biases  # the test can tell
    glm4_moe_engine.weight_receiver().update_weights(biases, "2")
    check_engine_matches(glm4_moe_engine, new_model, hf_greedy)
