"""Multi-turn SFT masks (``--loss-mask-type``): assistant turns (tool calls included) train; the rest does not."""

import json

import pytest
from transformers import AutoTokenizer

from slime.config.arguments import parse_args
from slime.data.data_source import RolloutDataSource
from slime.errors import DataError
from slime.rollout.loss_mask import conversation_tokens
from slime.rollout.sft import sft_rollout
from slime.rollout.train_batch import samples_to_train_batch
from slime.types import Status
from slime_testkit.tokenizer import QWEN_TOOLS_TEMPLATE, build_tokenizer

CALCULATOR = {"type": "function", "function": {"name": "calculator", "description": "adds", "parameters": {}}}
CONVERSATION = [
    {"role": "system", "content": "You add numbers."},
    {"role": "user", "content": "What is 12+34?"},
    {"role": "assistant", "content": "", "tool_calls": [{"name": "calculator", "arguments": {"expression": "12+34"}}]},
    {"role": "tool", "content": "46"},
    {"role": "assistant", "content": "It is 46."},
]
CALL_TURN = '<tool_call>\n{"name": "calculator", "arguments": {"expression": "12+34"}}\n</tool_call><|im_end|>'


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    return AutoTokenizer.from_pretrained(
        build_tokenizer(tmp_path_factory.mktemp("tok"), chat_template=QWEN_TOOLS_TEMPLATE)
    )


def trained_runs(tokenizer, ids: list[int], mask: list[int]) -> list[str]:
    """The text of each run of trained tokens."""
    runs, current = [], []
    for token, trained in zip(ids, mask, strict=True):
        if trained:
            current.append(token)
        elif current:
            runs.append(tokenizer.decode(current))
            current = []
    return runs + ([tokenizer.decode(current)] if current else [])


@pytest.mark.parametrize("loss_mask_type", ["qwen", "qwen3", "qwen3_5"])
def test_assistant_turns_train_and_tool_calls_with_them(tokenizer, loss_mask_type):
    ids, mask = conversation_tokens(tokenizer, CONVERSATION, [CALCULATOR], loss_mask_type)
    assert len(ids) == len(mask)
    assert tokenizer.decode(ids) == tokenizer.apply_chat_template(CONVERSATION, tools=[CALCULATOR], tokenize=False)
    # Each assistant turn from after "<|im_start|>assistant\n" through its <|im_end|>; system, user, the tool's
    # response and the turn headers stay out.
    assert trained_runs(tokenizer, ids, mask) == [CALL_TURN, "It is 46.<|im_end|>"]


def test_a_turn_trains_on_the_ids_the_model_writes_after_its_generation_prompt(tokenizer):
    ids, mask = conversation_tokens(tokenizer, CONVERSATION, None, "qwen")
    first = mask.index(1)
    prompt = tokenizer.apply_chat_template(CONVERSATION[:2], tokenize=False, add_generation_prompt=True)
    # What generation sends (the templated prompt encoded whole), then the turn encoded on its own.
    assert ids[:first] == tokenizer.encode(prompt, add_special_tokens=False)
    assert ids[first : first + mask[first:].index(0)] == tokenizer.encode(CALL_TURN, add_special_tokens=False)


def test_step_loss_mask_zero_keeps_a_turn_out(tokenizer):
    messages = [*CONVERSATION[:4], {**CONVERSATION[4], "step_loss_mask": 0}]
    ids, mask = conversation_tokens(tokenizer, messages, None, "qwen")
    assert trained_runs(tokenizer, ids, mask) == [CALL_TURN]


def test_a_thinking_generation_prompt_stays_out_of_the_loss(tmp_path):
    template = (
        "{%- for m in messages %}{{- '<|im_start|>' + m.role + '\\n' }}"
        "{%- if m.role == 'assistant' %}{{- '<think>\\n' + m.reasoning + '\\n</think>\\n\\n' }}{%- endif %}"
        "{{- m.content + '<|im_end|>\\n' }}{%- endfor %}"
        "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n<think>\\n' }}{%- endif %}"
    )
    tokenizer = AutoTokenizer.from_pretrained(build_tokenizer(tmp_path, chat_template=template))
    messages = [{"role": "user", "content": "2+2?"}, {"role": "assistant", "reasoning": "add", "content": "4"}]
    ids, mask = conversation_tokens(tokenizer, messages, None, "qwen3_5")
    assert trained_runs(tokenizer, ids, mask) == ["add\n</think>\n\n4<|im_end|>"]


def test_distill_qwen_trains_the_last_message_after_the_first(tokenizer):
    messages = [{"role": "user", "content": "What is 2+2?"}, {"role": "assistant", "content": "4, surely."}]
    ids, mask = conversation_tokens(tokenizer, messages, None, "distill_qwen")
    prompt = tokenizer.apply_chat_template(messages[:1], tokenize=False, add_generation_prompt=True)
    assert ids == tokenizer.encode(prompt, add_special_tokens=False) + tokenizer.encode("4, surely.")
    assert trained_runs(tokenizer, ids, mask) == ["4, surely."]


def test_a_template_without_chatml_turns_is_a_clear_error(tmp_path):
    template = "{%- for m in messages %}{{- m.role + ': ' + m.content + '\\n' }}{%- endfor %}"
    tokenizer = AutoTokenizer.from_pretrained(build_tokenizer(tmp_path, chat_template=template))
    with pytest.raises(DataError, match=r"message 2 \(assistant\): no '<\|im_start\|>assistant \.\.\. <\|im_end\|>'"):
        conversation_tokens(tokenizer, CONVERSATION, None, "qwen")


def sft_args(model, data, *extra):
    return parse_args(
        [
            "--hf-checkpoint", str(model), "--prompt-data", str(data), "--input-key", "messages",
            "--rollout-function-path", "sft", "--loss-type", "sft_loss", "--rollout-batch-size", "1", *extra,
        ]
    )  # fmt: skip


def test_sft_rollout_trains_the_assistant_turns_of_a_conversation(tmp_path, tokenizer):
    tokenizer.save_pretrained(tmp_path / "model")
    data = tmp_path / "train.jsonl"
    data.write_text(json.dumps({"messages": CONVERSATION, "tools": [CALCULATOR]}) + "\n")
    args = sft_args(tmp_path / "model", data)
    (sample,) = sft_rollout(args, 0, RolloutDataSource(args), engine=None).samples

    ids, mask = conversation_tokens(tokenizer, CONVERSATION, [CALCULATOR], "qwen")
    first = mask.index(1)
    assert sample.tokens == ids and sample.loss_mask == mask[first:]
    assert sample.response_length == len(ids) - first and sample.response.startswith("<tool_call>")
    assert sample.status is Status.COMPLETED and sample.reward == 0.0 and sample.rollout_log_probs is None
    batch = samples_to_train_batch(args, [sample])
    assert list(batch.loss_masks[0]) == mask[first:]


def test_sft_conversation_without_an_assistant_turn_names_the_sample(tmp_path, tokenizer):
    tokenizer.save_pretrained(tmp_path / "model")
    data = tmp_path / "train.jsonl"
    data.write_text(json.dumps({"messages": CONVERSATION[:2]}) + "\n")
    args = sft_args(tmp_path / "model", data)
    with pytest.raises(DataError, match="sample 0: its conversation has no assistant turn to train on"):
        sft_rollout(args, 0, RolloutDataSource(args), engine=None)
