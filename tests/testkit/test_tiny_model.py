"""The tiny model builder: a complete HF directory that transformers loads and generates with, built the same way
every time."""

from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from transformers import AutoModelForCausalLM, AutoTokenizer

from slime_testkit.tiny_model import build_tiny_model


@pytest.mark.parametrize("arch", ["qwen2", "qwen3", "llama"])
def test_loads_from_disk_and_generates_greedily(tmp_path: Path, arch: str) -> None:
    path = build_tiny_model(tmp_path / "model", arch=arch)
    model, info = AutoModelForCausalLM.from_pretrained(path, output_loading_info=True)
    tokenizer = AutoTokenizer.from_pretrained(path)
    assert not any(info.values()), info  # no missing, unexpected or mismatched weights
    assert model.config.model_type == arch
    assert model.config.vocab_size == len(tokenizer)
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert model.generation_config.eos_token_id[0] == tokenizer.eos_token_id == im_end

    messages = [{"role": "user", "content": "What is 2 + 2?"}]
    prompt = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_dict=True, return_tensors="pt")
    first = model.generate(**prompt, max_new_tokens=8, do_sample=False)
    again = model.generate(**prompt, max_new_tokens=8, do_sample=False)
    assert first.shape[1] > prompt["input_ids"].shape[1]
    assert torch.equal(first, again)


def test_same_seed_gives_identical_files(tmp_path: Path) -> None:
    first = build_tiny_model(tmp_path / "a", seed=3)
    second = build_tiny_model(tmp_path / "b", seed=3)
    other_seed = build_tiny_model(tmp_path / "c", seed=4)
    names = sorted(p.name for p in first.iterdir())
    assert names == sorted(p.name for p in second.iterdir())
    for name in names:
        assert (first / name).read_bytes() == (second / name).read_bytes(), name
    assert (first / "model.safetensors").read_bytes() != (other_seed / "model.safetensors").read_bytes()


def test_building_leaves_the_callers_rng_alone(tmp_path: Path) -> None:
    state = torch.get_rng_state()
    build_tiny_model(tmp_path / "model")
    assert torch.equal(torch.get_rng_state(), state)


def test_padded_vocab_and_untied_head(tmp_path: Path) -> None:
    path = build_tiny_model(tmp_path / "model", vocab_size=520, tie_word_embeddings=False, hidden_size=32)
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path)
    assert len(tokenizer) <= 520 == model.config.vocab_size
    with safe_open(path / "model.safetensors", "pt") as weights:
        assert weights.get_slice("lm_head.weight").get_shape() == [520, 32]


def test_vocab_smaller_than_tokenizer_is_refused(tmp_path: Path) -> None:
    # Every byte has a token, so no tokenizer is smaller than 256 + the special tokens.
    with pytest.raises(ValueError, match="smaller than the tokenizer"):
        build_tiny_model(tmp_path / "model", vocab_size=200)
