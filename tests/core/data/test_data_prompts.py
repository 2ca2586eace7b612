"""Building prompt samples: the public sets' formats, keys, metadata and tools, the chat template, the length filter."""

import json
import logging

import pytest
from transformers import AutoTokenizer

from slime.data.dataset import load_prompt_samples, load_tokenizer
from slime.errors import ConfigError, DataError
from slime.types import Sample, Status


def chatml_user(content: str) -> str:
    return f"<|im_start|>user\n{content}<|im_end|>\n<|im_start|>assistant\n"


def error_of(spec: str, **kwargs) -> str:
    with pytest.raises(DataError) as info:
        load_prompt_samples(spec, **kwargs)
    return str(info.value)


# --- the public sets, as they are ------------------------------------------------------------------------------


def test_dapo_math_17k_keeps_message_lists_without_the_template(dapo_jsonl, dapo_rows):
    samples = load_prompt_samples(dapo_jsonl, input_key="prompt", label_key="label")
    assert [s.prompt for s in samples] == [row["prompt"] for row in dapo_rows]
    assert [s.label for s in samples] == ["34", "55", "56"]
    first = samples[0]
    assert (first.metadata, first.status, first.index, first.group_index, first.tokens) == (
        {},
        Status.PENDING,
        None,
        None,
        [],
    )


def test_dapo_math_17k_with_the_chat_template(dapo_jsonl, dapo_rows, tokenizer):
    samples = load_prompt_samples(
        dapo_jsonl, input_key="prompt", label_key="label", tokenizer=tokenizer, apply_chat_template=True
    )
    assert samples[0].prompt == chatml_user(dapo_rows[0]["prompt"][0]["content"])
    assert samples[2].prompt == "<|im_start|>user\nWhat is $7 \\times 8$?<|im_end|>\n<|im_start|>assistant\n"


def test_aime_2024_string_prompts(aime_jsonl, aime_rows, tokenizer):
    plain = load_prompt_samples(aime_jsonl, input_key="prompt", label_key="label")
    assert [s.prompt for s in plain] == [row["prompt"] for row in aime_rows]
    assert [s.label for s in plain] == ["204", "540"]
    templated = load_prompt_samples(
        aime_jsonl, input_key="prompt", label_key="label", tokenizer=tokenizer, apply_chat_template=True
    )
    assert [s.prompt for s in templated] == [chatml_user(row["prompt"]) for row in aime_rows]


def test_gsm8k_parquet_with_messages_and_label_columns(gsm8k_parquet, gsm8k_rows, tokenizer):
    samples = load_prompt_samples(
        gsm8k_parquet, input_key="messages", label_key="label", tokenizer=tokenizer, apply_chat_template=True
    )
    assert [s.prompt for s in samples] == [chatml_user(row["messages"][0]["content"]) for row in gsm8k_rows]
    assert [s.label for s in samples] == ["72", "10"]
    sliced = load_prompt_samples(gsm8k_parquet + "@[1:]", input_key="messages", label_key="label")
    assert [s.label for s in sliced] == ["10"]
    assert sliced[0].prompt == gsm8k_rows[1]["messages"]


def test_a_multi_turn_prompt_is_templated_whole(write_jsonl, tokenizer):
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "2+2?"},
        {"role": "assistant", "content": "4"},
        {"role": "user", "content": "3+3?"},
    ]
    path = write_jsonl("train.jsonl", [{"input": messages}])
    [sample] = load_prompt_samples(path, tokenizer=tokenizer, apply_chat_template=True)
    assert sample.prompt == (
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n2+2?<|im_end|>\n"
        "<|im_start|>assistant\n4<|im_end|>\n<|im_start|>user\n3+3?<|im_end|>\n<|im_start|>assistant\n"
    )


# --- keys -----------------------------------------------------------------------------------------------------


def test_default_keys(write_jsonl):
    path = write_jsonl("train.jsonl", [{"input": "hi", "label": "x", "metadata": {"source_name": "toy"}}])
    [sample] = load_prompt_samples(path)
    assert (sample.prompt, sample.label, sample.metadata) == ("hi", None, {"source_name": "toy"})


def test_a_missing_input_key_lists_the_keys_present(dapo_jsonl):
    assert error_of(dapo_jsonl) == (
        "data/dapo-math-17k.jsonl line 1: no key 'input' (from --input-key); keys present: label, prompt"
    )


def test_a_missing_key_in_a_later_row(write_jsonl):
    path = write_jsonl("train.jsonl", [{"input": "a"}, {}, {"question": "b"}])
    assert error_of(path) == "data/train.jsonl line 2: no key 'input' (from --input-key); keys present: none"


def test_a_missing_label_key(aime_jsonl):
    assert error_of(aime_jsonl, input_key="prompt", label_key="answer") == (
        "data/aime-2024.jsonl line 1: no key 'answer' (from --label-key); keys present: label, prompt"
    )


def test_a_missing_parquet_column_names_the_row(gsm8k_parquet):
    assert error_of(gsm8k_parquet + "@[1:]") == (
        "data/gsm8k-train.parquet row 1: no key 'input' (from --input-key); keys present: label, messages"
    )


@pytest.mark.parametrize(
    ("prompt", "kind"),
    [(None, "null"), (7, "number"), ({"role": "user"}, "object"), ([], "empty array"), (True, "boolean")],
)
def test_a_prompt_of_the_wrong_type(write_jsonl, prompt, kind):
    path = write_jsonl("train.jsonl", [{"input": "ok"}, {"input": prompt}])
    assert error_of(path) == (
        f"data/train.jsonl line 2: 'input' (from --input-key) must be a string or a list of messages, got {kind}"
    )


@pytest.mark.parametrize("message", ["hello", {"role": "user"}, {"content": "hi"}])
def test_a_message_without_role_and_content(write_jsonl, message):
    path = write_jsonl("train.jsonl", [{"prompt": [{"role": "system", "content": "x"}, message]}])
    assert error_of(path, input_key="prompt") == (
        "data/train.jsonl line 1: 'prompt' (from --input-key) message 1 must be an object with 'role' and 'content'"
    )


def test_a_null_parquet_prompt_names_the_row(write_parquet):
    path = write_parquet("train.parquet", [{"input": "a"}, {"input": None}])
    assert error_of(path) == (
        "data/train.parquet row 1: 'input' (from --input-key) must be a string or a list of messages, got null"
    )


# --- metadata and tools ---------------------------------------------------------------------------------------


def test_metadata_is_copied_and_null_or_missing_is_empty(write_jsonl):
    path = write_jsonl(
        "train.jsonl",
        [{"input": "a", "metadata": {"source_name": "s", "n": 1}}, {"input": "b", "metadata": None}, {"input": "c"}],
    )
    assert [s.metadata for s in load_prompt_samples(path)] == [{"source_name": "s", "n": 1}, {}, {}]
    assert [s.metadata for s in load_prompt_samples(path, metadata_key=None)] == [{}, {}, {}]


def test_a_custom_metadata_key(write_jsonl):
    path = write_jsonl("train.jsonl", [{"input": "a", "extra": {"choices": ["A", "B"]}}])
    assert load_prompt_samples(path, metadata_key="extra")[0].metadata == {"choices": ["A", "B"]}


def test_metadata_that_is_not_an_object(write_jsonl):
    path = write_jsonl("train.jsonl", [{"input": "a", "metadata": ["x"]}])
    assert error_of(path) == "data/train.jsonl line 1: 'metadata' (from --metadata-key) must be an object, got array"


TOOLS = [{"type": "function", "function": {"name": "calculator", "parameters": {"type": "object"}}}]


def test_tools_go_to_metadata_and_into_the_chat_template(write_jsonl, tokenizer):
    path = write_jsonl(
        "train.jsonl",
        [
            {"input": "What is 6*7?", "tools": TOOLS, "metadata": {"source_name": "t"}},
            {"input": "And 2+2?", "tools": json.dumps(TOOLS)},  # parquet sets often keep tools as a JSON string
            {"input": "No tools.", "tools": None},
        ],
    )
    plain = load_prompt_samples(path)
    assert [s.metadata for s in plain] == [{"source_name": "t", "tools": TOOLS}, {"tools": TOOLS}, {}]
    assert plain[0].prompt == "What is 6*7?"
    templated = load_prompt_samples(path, tokenizer=tokenizer, apply_chat_template=True)
    system = f"<|im_start|>system\n# Tools\n\n<tools>\n{json.dumps(TOOLS[0])}\n</tools><|im_end|>\n"
    assert templated[0].prompt == system + chatml_user("What is 6*7?")
    assert templated[1].prompt == system + chatml_user("And 2+2?")
    assert templated[2].prompt == chatml_user("No tools.")


def test_tools_under_a_custom_key_or_none(write_jsonl):
    path = write_jsonl("train.jsonl", [{"input": "a", "functions": TOOLS, "tools": "ignored"}])
    assert load_prompt_samples(path, tool_key="functions")[0].metadata == {"tools": TOOLS}
    assert load_prompt_samples(path, tool_key=None)[0].metadata == {}


@pytest.mark.parametrize(
    ("tools", "message"),
    [
        ({"name": "calc"}, "must be a list of tools or a JSON string of one, got object"),
        ('{"name": "calc"}', "must be a list of tools or a JSON string of one, got object"),
        (3, "must be a list of tools or a JSON string of one, got number"),
        ("[{", "is a string but not JSON (Expecting property name enclosed in double quotes: column 3)"),
    ],
)
def test_bad_tools(write_jsonl, tools, message):
    path = write_jsonl("train.jsonl", [{"input": "a", "tools": tools}])
    assert error_of(path) == f"data/train.jsonl line 1: 'tools' (from --tool-key) {message}"


# --- the chat template ----------------------------------------------------------------------------------------


def test_a_tokenizer_without_a_chat_template(aime_jsonl, plain_tokenizer_dir):
    plain = AutoTokenizer.from_pretrained(plain_tokenizer_dir)
    assert error_of(aime_jsonl, input_key="prompt", tokenizer=plain, apply_chat_template=True) == (
        f"--apply-chat-template: the tokenizer in '{plain_tokenizer_dir}' (from --hf-checkpoint) has no chat template"
    )


def test_chat_template_kwargs_reach_the_template(aime_jsonl, tokenizer_dir):
    custom = AutoTokenizer.from_pretrained(tokenizer_dir)
    custom.chat_template = "{{ greeting }}|{{ messages[0]['content'][:5] }}|{{ add_generation_prompt }}"
    samples = load_prompt_samples(
        aime_jsonl,
        input_key="prompt",
        tokenizer=custom,
        apply_chat_template=True,
        apply_chat_template_kwargs={"greeting": "hello"},
    )
    assert [s.prompt for s in samples] == ["hello|Every|True", "hello|Find |True"]


def test_a_failing_chat_template_names_the_row(write_jsonl, tokenizer_dir):
    custom = AutoTokenizer.from_pretrained(tokenizer_dir)
    custom.chat_template = "{% if messages|length > 1 %}{{ raise_exception('one message only') }}{% endif %}x"
    path = write_jsonl(
        "train.jsonl",
        [{"input": "a"}, {"input": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]}],
    )
    assert error_of(path, tokenizer=custom, apply_chat_template=True) == (
        "data/train.jsonl line 2: --apply-chat-template failed (TemplateError: one message only)"
    )


def test_a_tokenizer_is_required_for_the_template_and_the_length_filter(aime_jsonl):
    with pytest.raises(ValueError, match="needs a tokenizer"):
        load_prompt_samples(aime_jsonl, input_key="prompt", apply_chat_template=True)
    with pytest.raises(ValueError, match="needs a tokenizer"):
        load_prompt_samples(aime_jsonl, input_key="prompt", max_prompt_len=10)


def test_load_tokenizer(tokenizer_dir, data_dir):
    assert load_tokenizer(tokenizer_dir, "--apply-chat-template").eos_token == "<|im_end|>"
    with pytest.raises(ConfigError) as info:
        load_tokenizer(None, "--apply-chat-template")
    assert str(info.value) == "--apply-chat-template needs a tokenizer: set --hf-checkpoint"
    with pytest.raises(ConfigError) as info:
        load_tokenizer(str(data_dir), "--rollout-max-prompt-len")
    assert str(info.value).startswith(f"cannot load a tokenizer from '{data_dir}' (from --hf-checkpoint): ")
    with pytest.raises(ConfigError) as info:
        load_tokenizer("/no/such/model", "--apply-chat-template")
    assert str(info.value) == "cannot load a tokenizer from '/no/such/model' (from --hf-checkpoint): no such directory"


# --- --rollout-max-prompt-len ---------------------------------------------------------------------------------


def token_count(tokenizer, text: str) -> int:
    return len(tokenizer.encode(text, add_special_tokens=False))


def test_long_prompts_are_dropped_and_counted_once(write_jsonl, tokenizer, caplog):
    prompts = ["short", "a much longer prompt with many more words in it", "tiny", "x " * 40]
    path = write_jsonl("train.jsonl", [{"input": p} for p in prompts])
    limit = token_count(tokenizer, "short") + 2
    assert token_count(tokenizer, prompts[1]) > limit and token_count(tokenizer, "tiny") <= limit
    with caplog.at_level(logging.INFO, logger="slime.data.dataset"):
        samples = load_prompt_samples(path, tokenizer=tokenizer, max_prompt_len=limit)
    assert [s.prompt for s in samples] == ["short", "tiny"]
    assert [r.getMessage() for r in caplog.records] == [
        f"data/train.jsonl: dropped 2 of 4 prompts longer than --rollout-max-prompt-len {limit} tokens"
    ]


def test_the_limit_is_inclusive_and_counts_the_templated_prompt(aime_jsonl, tokenizer, caplog):
    templated = [
        s.prompt
        for s in load_prompt_samples(aime_jsonl, input_key="prompt", tokenizer=tokenizer, apply_chat_template=True)
    ]
    longest = max(token_count(tokenizer, p) for p in templated)
    with caplog.at_level(logging.INFO, logger="slime.data.dataset"):
        kept = load_prompt_samples(
            aime_jsonl, input_key="prompt", tokenizer=tokenizer, apply_chat_template=True, max_prompt_len=longest
        )
    assert [s.prompt for s in kept] == templated
    assert caplog.records == []  # nothing dropped, nothing logged


def test_all_prompts_too_long_is_an_error(dapo_jsonl, tokenizer):
    assert (
        error_of(
            dapo_jsonl + "@[:2]",
            input_key="prompt",
            tokenizer=tokenizer,
            apply_chat_template=True,
            max_prompt_len=3,
        )
        == "data/dapo-math-17k.jsonl@[:2]: all 2 prompts are longer than --rollout-max-prompt-len 3 tokens"
    )


def test_message_lists_without_the_template_are_not_filtered(dapo_jsonl, tokenizer, caplog):
    with caplog.at_level(logging.INFO, logger="slime.data.dataset"):
        samples = load_prompt_samples(dapo_jsonl, input_key="prompt", tokenizer=tokenizer, max_prompt_len=3)
    assert len(samples) == 3
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        (
            "WARNING",
            "data/dapo-math-17k.jsonl: --rollout-max-prompt-len is not applied to message-list prompts; "
            "add --apply-chat-template",
        )
    ]


def test_samples_are_plain_sample_objects(aime_jsonl):
    samples = load_prompt_samples(aime_jsonl, input_key="prompt", label_key="label")
    assert all(type(s) is Sample for s in samples)
    assert samples[0] is not samples[1] and samples[0].metadata is not samples[1].metadata
