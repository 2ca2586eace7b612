"""The locally trained test tokenizer: deterministic, quick, Qwen2-compatible, ChatML chat template."""

import json
import time
from pathlib import Path

import pytest
from tokenizers import Tokenizer
from transformers import AutoTokenizer, Qwen2Config

from slime_testkit.tokenizer import CHATML_TEMPLATE, build_tokenizer

TEXTS = [
    "Hello world 12345, what's 7*8?\n\n    indented\tand tabbed",
    "Café naïve — 数学 🙂 résumé",
    "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n",
    "Let's think step by step and output the final answer within \\boxed{}.",
]


def test_builds_are_byte_identical_and_quick(tmp_path):
    start = time.perf_counter()
    first = build_tokenizer(tmp_path / "a")
    elapsed = time.perf_counter() - start
    second = build_tokenizer(tmp_path / "b")
    assert elapsed < 2.0
    names = sorted(p.name for p in first.iterdir())
    assert names == ["chat_template.jinja", "tokenizer.json", "tokenizer_config.json"]
    for name in names:
        assert (first / name).read_bytes() == (second / name).read_bytes(), name


def test_loads_as_a_qwen2_tokenizer(tokenizer):
    assert type(tokenizer).__name__ == "Qwen2Tokenizer"
    assert len(tokenizer) == 512
    assert tokenizer.convert_tokens_to_ids(["<|endoftext|>", "<|im_start|>", "<|im_end|>"]) == [0, 1, 2]
    assert (tokenizer.eos_token, tokenizer.eos_token_id) == ("<|im_end|>", 2)
    assert (tokenizer.pad_token, tokenizer.pad_token_id) == ("<|endoftext|>", 0)
    assert tokenizer.bos_token is None
    assert tokenizer.encode("hi", add_special_tokens=True) == tokenizer.encode("hi", add_special_tokens=False)


@pytest.mark.parametrize("text", TEXTS)
def test_round_trips_any_text_and_keeps_special_tokens_whole(tokenizer, text):
    ids = tokenizer.encode(text, add_special_tokens=False)
    assert tokenizer.decode(ids) == text
    if "<|im_start|>" in text:
        assert ids[0] == 1 and ids.count(2) == 1


def test_digits_are_split_one_by_one_as_in_qwen2(tokenizer):
    assert tokenizer.tokenize("12345") == ["1", "2", "3", "4", "5"]


def test_tokenizer_json_and_autotokenizer_agree_with_or_without_a_qwen2_config(tmp_path):
    # SGLang follows tokenizer.json; transformers rebuilds a Qwen2Tokenizer's pipeline; they must give the same ids.
    path = build_tokenizer(tmp_path / "tok")
    raw = Tokenizer.from_file(str(path / "tokenizer.json"))
    expected = [raw.encode(text).ids for text in TEXTS]
    assert [AutoTokenizer.from_pretrained(path).encode(t, add_special_tokens=False) for t in TEXTS] == expected
    Qwen2Config(
        vocab_size=512, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2
    ).save_pretrained(path)
    with_config = AutoTokenizer.from_pretrained(path)
    assert type(with_config).__name__ == "Qwen2Tokenizer"
    assert [with_config.encode(t, add_special_tokens=False) for t in TEXTS] == expected


def test_the_chatml_template(tokenizer):
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+2?"}]
    assert tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True) == (
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n2+2?<|im_end|>\n<|im_start|>assistant\n"
    )
    assert tokenizer.apply_chat_template(messages[1:], tokenize=False, add_generation_prompt=False) == (
        "<|im_start|>user\n2+2?<|im_end|>\n"
    )
    tools = [{"name": "calc"}, {"name": "search"}]
    assert tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True, tools=tools) == (
        '<|im_start|>system\nBe brief.\n\n# Tools\n\n<tools>\n{"name": "calc"}\n{"name": "search"}\n</tools>'
        "<|im_end|>\n<|im_start|>user\n2+2?<|im_end|>\n<|im_start|>assistant\n"
    )
    assert tokenizer.chat_template == CHATML_TEMPLATE


def test_without_a_chat_template(plain_tokenizer_dir):
    loaded = AutoTokenizer.from_pretrained(plain_tokenizer_dir)
    assert loaded.chat_template is None
    assert json.loads(Path(plain_tokenizer_dir, "tokenizer_config.json").read_text()).get("chat_template") is None
    assert not Path(plain_tokenizer_dir, "chat_template.jinja").exists()


def test_a_custom_corpus_and_vocab_size(tmp_path):
    path = build_tokenizer(tmp_path / "tok", corpus=["aaa bbb aaa bbb ab ab"] * 3, vocab_size=300)
    loaded = AutoTokenizer.from_pretrained(path)
    assert 259 < len(loaded) <= 300  # 3 special tokens + 256 bytes + the few merges this corpus allows
    assert loaded.tokenize("aaa") == ["aaa"]
