"""The math reward functions: ``deepscaler``, ``dapo`` and ``math``, each ``async f(args, sample)``."""

from typing import Any

from slime.rollout.reward import last_boxed_answer
from slime.types import Sample
from slime_rewards_math.answers import (
    answer_after_thinking,
    answer_line,
    as_number,
    final_answer,
    gold_answers,
    is_choice,
    is_text,
    normalize_answer,
)
from slime_rewards_math.symbolic import symbolically_equal

DAPO_TAIL_CHARS = 300  # DAPO reads only the end of a response; the longest MATH-500 answer is about 160 characters
DAPO_INVALID = "[INVALID]"


async def answers_match(prediction: str, gold: str) -> bool:
    """Whether a final answer equals the gold one: same normal form, same exact number, or (for expressions,
    intervals, sets, ...) symbolically equal by math-verify within a time limit."""
    pred, ref = normalize_answer(prediction), normalize_answer(gold)
    if not pred or not ref:
        return False
    if pred == ref:
        return True
    pred_value, ref_value = as_number(pred), as_number(ref)
    if pred_value is not None and ref_value is not None:
        return pred_value == ref_value  # exact: 0.333 is not 1/3
    if is_choice(pred) or is_choice(ref) or is_text(pred) or is_text(ref):
        return False
    return await symbolically_equal(ref, pred)


async def _matches_any(prediction: str | None, label: Any) -> bool:
    if not prediction:
        return False
    for gold in gold_answers(label):
        if await answers_match(prediction, gold):
            return True
    return False


async def deepscaler(args: Any, sample: Sample) -> float:
    """1.0 when the last ``\\boxed{}`` after the reasoning (``</think>`` or ``###Response``) equals the label.

    0.0 when the response has no end of reasoning: an unfinished thought earns nothing, as in DeepScaleR.
    """
    solution = answer_after_thinking(sample.response)
    if solution is None:
        return 0.0
    return 1.0 if await _matches_any(last_boxed_answer(solution), sample.label) else 0.0


async def dapo(args: Any, sample: Sample) -> dict[str, Any]:
    """DAPO's reward: ``{"score": 1.0 | -1.0, "acc": bool, "pred": str}`` (train on it with ``--reward-key score``).

    The answer is the last ``Answer: ...`` line, or else the last ``\\boxed{}``, in the response's last 300 characters;
    ``pred`` is its normal form, or ``[INVALID]`` when there is none.
    """
    tail = sample.response[-DAPO_TAIL_CHARS:]
    prediction = answer_line(tail) or final_answer(tail)
    correct = await _matches_any(prediction, sample.label)
    pred = normalize_answer(prediction) if prediction else DAPO_INVALID
    return {"score": 1.0 if correct else -1.0, "acc": correct, "pred": pred}


async def math_reward(args: Any, sample: Sample) -> float:
    """1.0 when the response's final answer (last ``\\boxed{}``, else last ``Answer:`` line) equals the label."""
    return 1.0 if await _matches_any(final_answer(sample.response), sample.label) else 0.0
