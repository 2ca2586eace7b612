"""A GLM4 served by a real SGLang CPU engine: greedy output equals HF's token for token, and a weight update under the
names of its checkpoint on disk (what the megatron backend exports: tests/megatron/test_megatron_glm4.py checks its
export against the same file bit for bit) changes it to exactly HF's with the new weights.

One engine of its own for this module (the shared deployment serves a Qwen2), started once.
"""

import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from slime_testkit.tiny_model import build_tiny_glm4_model

sys.path.insert(0, str(Path(__file__).parent))
from engine_checks import PROMPTS, check_engine_matches, one_cpu_engine, perturbed  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def glm4_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_glm4_model(tmp_path_factory.mktemp("sglang-glm4") / "model", seed=0)


@pytest.fixture(scope="module")
def glm4_engine(glm4_model: Path, tmp_path_factory: pytest.TempPathFactory):
    with one_cpu_engine(glm4_model, tmp_path_factory.mktemp("sglang-glm4-run")) as engine:
        yield engine


def test_glm4_greedy_output_equals_hf_and_a_weight_update_takes_effect(
    glm4_engine, hf_greedy, glm4_model: Path, tmp_path: Path
) -> None:
    from transformers import AutoModelForCausalLM

    hf = AutoModelForCausalLM.from_pretrained(glm4_model, dtype=torch.float32).eval()
    assert type(hf).__name__ == "Glm4ForCausalLM"
    check_engine_matches(glm4_engine, hf, hf_greedy)

    # Every tensor moved, the norms and biases too (freshly initialised they are ones and zeros).
    new_model = perturbed(hf, seed=1)
    assert hf_greedy(new_model, PROMPTS[0], 8)[0] != hf_greedy(hf, PROMPTS[0], 8)[0]  # the test can tell
    new_model.save_pretrained(tmp_path / "new")
    named = sorted(load_file(tmp_path / "new" / "model.safetensors").items())
    assert "model.layers.1.mlp.gate_up_proj.weight" in dict(named)
    glm4_engine.weight_receiver().update_weights(named, "1")
    check_engine_matches(glm4_engine, new_model, hf_greedy)
