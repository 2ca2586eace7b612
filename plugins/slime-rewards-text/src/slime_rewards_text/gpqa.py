"""Multiple-choice letter reward (``--rm-type gpqa``): 1.0 when the response picks the correct letter.

The correct letter comes from ``metadata["correct_letter"]``, else from the label: a letter (``"B"``, ``"(B)"``), a
0-based index, or the text of one of ``metadata["choices"]`` (a list in letter order, or a dict letter -> text).
Valid letters are ``metadata["valid_letters"]``, else one per choice, else A-D.
"""

import re
from typing import Any

from slime.types import Sample

LETTERS = "ABCDEFGHIJ"
_DEFAULT_LETTERS = "ABCD"

# Where a response states its choice, most explicit first; within a pattern the last occurrence wins.
_PATTERNS = (
    r"\\boxed\{\s*(?:\\text\{)?\s*\(?([A-J])\)?\s*\}?\s*\}",
    r"(?i:answer|choice|option)\s*(?:is|:|=)?\s*[:*\s]*(?:option\s*|choice\s*)?\(?\**([A-J])\b\)?",
    r"(?m)^\s*\**\(?([A-J])\)?\**(?:[.):]|\s*$)",
    r"\(([A-J])\)",
)


def _normalize(text: str) -> str:
    return " ".join(re.sub(r"[^a-z0-9]+", " ", str(text).lower()).split())


def _choices(metadata: dict[str, Any]) -> dict[str, str]:
    choices = metadata.get("choices") or {}
    if isinstance(choices, dict):
        return {str(letter).strip().upper(): str(text) for letter, text in choices.items()}
    return {LETTERS[i]: str(text) for i, text in enumerate(choices[: len(LETTERS)])}


def _valid_letters(metadata: dict[str, Any], choices: dict[str, str]) -> str:
    if metadata.get("valid_letters"):
        return "".join(str(letter).strip().upper() for letter in metadata["valid_letters"])
    return "".join(sorted(choices)) or _DEFAULT_LETTERS


def correct_letter(label: Any, metadata: dict[str, Any]) -> str:
    """The correct choice's letter, from the metadata or the label; ``ValueError`` when neither says."""
    choices = _choices(metadata)
    if metadata.get("correct_letter"):
        return str(metadata["correct_letter"]).strip().strip("()").upper()
    if isinstance(label, int) and not isinstance(label, bool) and 0 <= label < len(LETTERS):
        return LETTERS[label]
    if isinstance(label, str):
        letter = re.fullmatch(r"\s*\(?([A-Ja-j])\)?[.)]?\s*", label)
        if letter:
            return letter.group(1).upper()
        for key, text in choices.items():
            if _normalize(text) == _normalize(label):
                return key
    raise ValueError(f"gpqa: cannot tell the correct letter from label {label!r} and metadata {sorted(metadata)}")


def extract_letter(response: str, valid_letters: str, choices: dict[str, str] | None = None) -> str | None:
    """The letter a response chooses (its reasoning before ``</think>`` ignored), or None."""
    if "</think>" in response:
        response = response.rsplit("</think>", 1)[1]
    for pattern in _PATTERNS:
        found = [letter for letter in re.findall(pattern, response) if letter in valid_letters]
        if found:
            return found[-1]
    # No letter: accept a response that quotes exactly one choice's text.
    text = f" {_normalize(response)} "
    quoted = [
        key for key, choice in (choices or {}).items() if _normalize(choice) and f" {_normalize(choice)} " in text
    ]
    return quoted[0] if len(quoted) == 1 else None


async def gpqa(args: Any, sample: Sample) -> float:
    """1.0 when the response's chosen letter is the correct one, else 0.0."""
    choices = _choices(sample.metadata)
    correct = correct_letter(sample.label, sample.metadata)
    chosen = extract_letter(sample.response, _valid_letters(sample.metadata, choices), choices)
    return 1.0 if chosen == correct else 0.0
