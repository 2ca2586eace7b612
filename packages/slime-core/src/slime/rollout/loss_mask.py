"""Token ids and loss mask of a whole conversation, for multi-turn SFT (``--loss-mask-type``, slime's values).

``qwen``, ``qwen3``, ``qwen3_5`` (ChatML templates): the conversation is rendered once by the tokenizer's chat
template (tools included), then each assistant turn trains from the end of the template's generation prompt
(``<|im_start|>assistant\\n``, with ``<think>\\n`` where the template adds it) through its ``<|im_end|>``: what the
model itself writes at generation time, tool calls included. Everything else (system, user, tool responses, turn
headers) has mask 0, as does an assistant turn with ``"step_loss_mask": 0``. The text is tokenized piece by piece at
those boundaries, so a turn's ids are the ones the model would produce after its generation prompt.

``distill_qwen``: the first message as the prompt (with the generation prompt) and the last message's content as the
only trained tokens, as slime does for distillation data.
"""

from typing import Any

from slime.errors import DataError
from slime.rollout.tools import IM_END, IM_START, generation_prompt

LOSS_MASK_TYPES = ("qwen", "qwen3", "qwen3_5", "distill_qwen")
STEP_LOSS_MASK_KEY = "step_loss_mask"  # slime's per-message switch: 0 keeps an assistant turn out of the loss


def conversation_tokens(
    tokenizer: Any, messages: list[dict[str, Any]], tools: list[Any] | None, loss_mask_type: str
) -> tuple[list[int], list[int]]:
    """``(token_ids, loss_mask)`` of the whole conversation, one mask entry per token."""
    if loss_mask_type not in LOSS_MASK_TYPES:
        raise ValueError(f"unknown loss mask type {loss_mask_type!r}; expected one of {', '.join(LOSS_MASK_TYPES)}")
    if loss_mask_type == "distill_qwen":
        pieces = _last_message_pieces(tokenizer, messages, tools)
    else:
        pieces = _assistant_turn_pieces(tokenizer, messages, tools)
    token_ids: list[int] = []
    loss_mask: list[int] = []
    for text, trained in pieces:
        ids = tokenizer.encode(text, add_special_tokens=False) if text else []
        token_ids += ids
        loss_mask += [trained] * len(ids)
    return token_ids, loss_mask


def _trained(message: dict[str, Any]) -> int:
    return 1 if message.get(STEP_LOSS_MASK_KEY, 1) == 1 else 0


def _assistant_turn_pieces(
    tokenizer: Any, messages: list[dict[str, Any]], tools: list[Any] | None
) -> list[tuple[str, int]]:
    text = tokenizer.apply_chat_template(messages, tools=tools, tokenize=False)
    header = IM_START + "assistant\n"
    prompt = generation_prompt(tokenizer)
    pieces = []
    cursor = 0
    for number, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        start = text.find(header, cursor)
        end = text.find(IM_END, start + len(header)) if start >= 0 else -1
        if end < 0:
            raise DataError(
                f"message {number} (assistant): no '{header.strip()} ... {IM_END}' turn for it in the chat template's "
                "rendering; --loss-mask-type qwen, qwen3 and qwen3_5 need a ChatML template"
            )
        content = start + (len(prompt) if text.startswith(prompt, start) else len(header))
        end += len(IM_END)
        pieces += [(text[cursor:content], 0), (text[content:end], _trained(message))]
        cursor = end
    pieces.append((text[cursor:], 0))
    return pieces


def _last_message_pieces(
    tokenizer: Any, messages: list[dict[str, Any]], tools: list[Any] | None
) -> list[tuple[str, int]]:
    prompt = tokenizer.apply_chat_template(messages[:1], tools=tools, tokenize=False, add_generation_prompt=True)
    return [(prompt, 0), (messages[-1]["content"], _trained(messages[-1]))]
