"""A Qwen3-MoE served by a real SGLang CPU engine: greedy output equals HF's, and a weight update of the experts
under per-expert names (what the megatron backend exports, as checkpoints on disk name them) changes it to exactly
HF's with the new weights. Under transformers 5's fused in-memory names SGLang answers 200 and changes nothing: the
same check catches that silent no-op.

One engine of its own for this module (the shared deployment serves a dense model), started once.
"""

import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from slime_testkit.tiny_model import build_tiny_moe_model

sys.path.insert(0, str(Path(__file__).parent))
from engine_checks import PROMPTS, check_engine_matches, one_cpu_engine, perturbed  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def moe_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # As Qwen's MoE checkpoints are: untied and every layer sparse. SGLang 0.5.23's Qwen3-MoE never ties lm_head to the
    # embedding and builds every layer as MoE (it reads neither mlp_only_layers nor decoder_sparse_step).
    path = tmp_path_factory.mktemp("sglang-moe") / "model"
    return build_tiny_moe_model(path, tie_word_embeddings=False, mlp_only_layers=(), seed=0)


@pytest.fixture(scope="module")
def moe_engine(moe_model: Path, tmp_path_factory: pytest.TempPathFactory):
    with one_cpu_engine(moe_model, tmp_path_factory.mktemp("sglang-moe-run")) as engine:
        yield engine


@pytest.fixture(scope="module")
def moe_hf(moe_model: Path):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(moe_model, dtype=torch.float32).eval()


def per_expert_tensors(model, out_dir: Path) -> list[tuple[str, torch.Tensor]]:
    """``model``'s weights under the names of its checkpoint on disk (per expert), as the megatron backend exports
    them (tests/megatron/test_megatron_moe.py checks its export against the same file bit for bit)."""
    model.save_pretrained(out_dir)
    return sorted(load_file(out_dir / "model.safetensors").items())


def test_expert_weight_updates_take_effect_and_a_silent_no_op_is_caught(
    moe_engine, moe_hf, hf_greedy, moe_model: Path, tmp_path: Path
) -> None:
    check_engine_matches(moe_engine, moe_hf, hf_greedy)
    new_model = perturbed(moe_hf, seed=1)
    assert hf_greedy(new_model, PROMPTS[0], 8)[0] != hf_greedy(moe_hf, PROMPTS[0], 8)[0]  # the test can tell

    # transformers 5's in-memory names: the experts fused into one tensor per layer. SGLang accepts them and changes
    # nothing, so the engine still answers as the old weights do: an update must be checked by its outputs.
    fused = [(name, t) for name, t in new_model.state_dict().items() if name.endswith("experts.gate_up_proj")]
    assert fused
    receiver = moe_engine.weight_receiver()
    receiver.update_weights(fused, "1")
    check_engine_matches(moe_engine, moe_hf, hf_greedy)

    named = per_expert_tensors(new_model, tmp_path / "new")
    assert "model.layers.0.mlp.experts.3.down_proj.weight" in dict(named)
    receiver.update_weights(named, "2")
    check_engine_matches(moe_engine, new_model, hf_greedy)
