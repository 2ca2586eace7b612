"""slime-rewards-text: f1, gpqa and random."""

import asyncio
import random

import pytest
from slime_rewards_text.f1 import f1, f1_score, normalize_text
from slime_rewards_text.gpqa import correct_letter, gpqa
from slime_rewards_text.random_reward import random_reward

from slime.plugins import registered_by
from slime.testing.contracts import check_reward_function
from slime.types import Sample


def run(coroutine):
    return asyncio.run(coroutine)


def test_f1_normalises_case_punctuation_articles_and_spaces():
    assert normalize_text("  The  Eiffel-Tower, in PARIS! ") == "eiffeltower in paris"
    assert f1_score("The Eiffel Tower", "eiffel tower") == 1.0
    assert f1_score("an apple", "apple.") == 1.0


@pytest.mark.parametrize(
    ("prediction", "reference", "expected"),
    [
        ("Barack Obama was president", "Obama", 2 * (1 / 4) * 1 / (1 / 4 + 1)),
        ("Obama", "Barack Obama", 2 * 1 * 0.5 / 1.5),
        ("red green blue", "blue green red", 1.0),
        ("cat cat dog", "cat dog dog", 2 / 3),
        ("nothing in common", "entirely different", 0.0),
        ("yes it is", "yes", 0.0),  # a verdict must match exactly
        ("no", "no", 1.0),
        ("yes", "no", 0.0),
        ("", "anything", 0.0),
    ],
)
def test_f1_score(prediction, reference, expected):
    assert f1_score(prediction, reference) == pytest.approx(expected)


def test_f1_reward_takes_the_best_acceptable_label():
    assert run(f1(None, Sample(response="New York City", label=["NYC", "new york city"]))) == 1.0
    assert run(f1(None, Sample(response="", label=["a", "b"]))) == 0.0


@pytest.mark.parametrize(
    ("response", "label", "metadata", "expected"),
    [
        ("<think>Maybe (A)? Answer: A</think>The answer is (C).", "C", {}, 1.0),
        ("<think>Answer: C</think>The answer is (A).", "C", {}, 0.0),
        ("<think>weighing options</think>Answer: **B**", "B", {}, 1.0),
        (r"So the answer is \boxed{D}.", 3, {}, 1.0),  # 0-based index label
        (r"\boxed{\text{(B)}}", "(B)", {}, 1.0),
        ("I pick option B.", "B", {}, 1.0),
        ("A. Because the field vanishes.", "A", {}, 1.0),
        ("B", "B", {}, 1.0),
        ("The answer is Paris.", "Paris", {"choices": ["London", "Paris", "Rome", "Berlin"]}, 1.0),
        ("The answer is Berlin.", "Paris", {"choices": ["London", "Paris", "Rome", "Berlin"]}, 0.0),
        ("Final answer: E", "E", {"choices": ["1", "2", "3", "4"]}, 0.0),  # E is not a valid letter here
        ("Final answer: E", "E", {"valid_letters": "ABCDE"}, 1.0),
        ("Answer: D", "ignored", {"correct_letter": "D"}, 1.0),
        ("Answer: B", "A", {}, 0.0),
        ("I cannot decide.", "A", {}, 0.0),
        ("Answer: C", "4.2 eV", {"choices": {"A": "1.0 eV", "B": "2.1 eV", "C": "4.2 eV", "D": "8.4 eV"}}, 1.0),
    ],
)
def test_gpqa(response, label, metadata, expected):
    assert run(gpqa(None, Sample(response=response, label=label, metadata=metadata))) == expected


def test_gpqa_without_a_correct_letter_is_an_error():
    with pytest.raises(ValueError, match="cannot tell the correct letter from label 'Venus'"):
        correct_letter("Venus", {"choices": ["Mars", "Earth"]})


def test_random_reward_is_a_fair_coin():
    random.seed(0)
    values = [run(random_reward(None, Sample())) for _ in range(200)]
    assert set(values) == {0.0, 1.0}
    assert 60 < sum(values) < 140


def test_plugin_registers_the_text_rewards_and_they_honour_the_contract():
    assert registered_by("rewards_text") == {"reward_functions": ["f1", "gpqa", "random"]}
    samples = [
        Sample(prompt="Capital of France?", response="Paris", label="B", metadata={"choices": ["Rome", "Paris"]}),
        Sample(prompt=[{"role": "user", "content": "?"}], tokens=[5, 6], response="Answer: A", label=0),
    ]
    assert check_reward_function("gpqa", samples) == [1.0, 1.0]
    assert check_reward_function("f1", [Sample(response="the cat", label="cat")]) == [1.0]
    assert set(check_reward_function("random", samples)) <= {0.0, 1.0}
