"""SQuAD-style token F1 between a response and a reference answer (``--rm-type f1``)."""

import re
import string
from collections import Counter
from typing import Any

from slime.types import Sample

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = str.maketrans("", "", string.punctuation)
# Answers that are a verdict rather than a span: partial token overlap with them means nothing.
_VERDICTS = {"yes", "no", "noanswer"}


def normalize_text(text: str) -> str:
    """Lower case, no punctuation, no articles (a, an, the), single spaces."""
    text = str(text).lower().translate(_PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def f1_score(prediction: str, reference: str) -> float:
    """Harmonic mean of token precision and recall after ``normalize_text``; a verdict must match exactly."""
    pred, ref = normalize_text(prediction), normalize_text(reference)
    if (pred in _VERDICTS or ref in _VERDICTS) and pred != ref:
        return 0.0
    pred_tokens, ref_tokens = pred.split(), ref.split()
    common = sum((Counter(pred_tokens) & Counter(ref_tokens)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred_tokens), common / len(ref_tokens)
    return 2 * precision * recall / (precision + recall)


async def f1(args: Any, sample: Sample) -> float:
    """Token F1 of the response against the label (the best over a list of acceptable labels)."""
    labels = sample.label if isinstance(sample.label, list | tuple) else [sample.label]
    return max((f1_score(sample.response, str(label)) for label in labels if label is not None), default=0.0)
