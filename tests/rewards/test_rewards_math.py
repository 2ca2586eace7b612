"""slime-rewards-math: a table of real answer formats, the three reward functions' own rules, and answer checking
that stays bounded in time."""

import asyncio
import os
import signal
import time

import pytest
from slime_rewards_math.answers import normalize_answer
from slime_rewards_math.rewards import dapo, deepscaler, math_reward
from slime_rewards_math.symbolic import WorkerPool, symbolically_equal

from slime.plugins import registered_by
from slime.testing.contracts import check_reward_function
from slime.types import Sample

# (response, label, expected reward of `math`), drawn from MATH / AIME / AMC style answers.
MATH_CASES = [
    # fractions and LaTeX fraction commands
    (r"so the answer is $\boxed{\frac{1}{2}}$.", r"\frac{1}{2}", 1.0),
    (r"\boxed{\dfrac{1}{2}}", r"\frac12", 1.0),
    (r"\boxed{\tfrac{3}{4}}", "3/4", 1.0),
    (r"\boxed{0.5}", r"\frac{1}{2}", 1.0),
    (r"\boxed{1/2}", r"\frac{1}{2}", 1.0),
    (r"\boxed{\frac{2}{4}}", r"\frac{1}{2}", 1.0),
    (r"\boxed{\frac{1}{3}}", "0.333", 0.0),
    (r"\boxed{\frac{1}{2}}", r"\frac{1}{3}", 0.0),
    (r"\boxed{\dfrac{3}{4}}", "0.75", 1.0),
    # negative numbers
    (r"\boxed{-3}", "-3", 1.0),
    (r"\boxed{-3}", "3", 0.0),
    ("\\boxed{\u22123}", "-3", 1.0),
    (r"\boxed{-\frac{1}{2}}", "-0.5", 1.0),
    (r"\boxed{\frac{-1}{2}}", r"-\frac12", 1.0),
    # nested braces, sqrt, pi
    (r"\boxed{\frac{\sqrt{3}}{2}}", r"\frac{\sqrt3}{2}", 1.0),
    (r"\boxed{2\sqrt{3}}", r"\sqrt{12}", 1.0),
    (r"\boxed{\sqrt{2}/2}", r"\frac{\sqrt{2}}{2}", 1.0),
    (r"\boxed{\sqrt{2}}", "1.414", 0.0),
    (r"\boxed{2\pi}", r"2\pi", 1.0),
    (r"\boxed{\pi/2}", r"\frac{\pi}{2}", 1.0),
    (r"\boxed{3.14}", r"\pi", 0.0),
    (r"\boxed{\left(3, \frac{\pi}{2}\right)}", r"(3,\frac{\pi}{2})", 1.0),
    # units, \text{}, degrees, percentages, currency
    (r"\boxed{10\text{ cm}}", "10", 1.0),
    (r"\boxed{12\text{ inches}}", "12", 1.0),
    (r"\boxed{5\mbox{ cm}^2}", "5", 1.0),
    (r"\boxed{30^\circ}", "30", 1.0),
    (r"\boxed{30^{\circ}}", "30°", 1.0),
    (r"\boxed{50\%}", "50", 1.0),
    (r"\boxed{\$5}", "5", 1.0),
    (r"\boxed{5.00}", "5", 1.0),
    (r"\boxed{\text{Monday}}", "Monday", 1.0),
    (r"\boxed{\text{Monday}}", "dynamo", 0.0),
    # thousands separators and scientific notation
    (r"\boxed{1,000}", "1000", 1.0),
    (r"\boxed{1{,}000{,}000}", "1000000", 1.0),
    (r"\boxed{1.5\times10^{3}}", "1500", 1.0),
    # intervals and sets
    (r"\boxed{(1, 2]}", "(1,2]", 1.0),
    (r"\boxed{[0, \infty)}", r"[0,\infty)", 1.0),
    (r"\boxed{(1,2)}", "[1,2]", 0.0),
    (r"\boxed{(-\infty, -2) \cup (3, \infty)}", r"(-\infty,-2)\cup(3,\infty)", 1.0),
    (r"\boxed{\{1,2\}}", r"\{2,1\}", 1.0),
    # multiple choice
    (r"\boxed{\text{(B)}}", "B", 1.0),
    (r"\boxed{B}", "(B)", 1.0),
    (r"\boxed{C}", "B", 0.0),
    # expressions and equations
    (r"\boxed{x=5}", "5", 1.0),
    (r"\boxed{x^2+2x+1}", "(x+1)^2", 1.0),
    # where the answer is
    (r"first \boxed{3}, no wait: \boxed{4}", "4", 1.0),
    (r"\boxed{7}", r"\boxed{7}", 1.0),
    (r"\fbox{12}", "12", 1.0),
    (r"$\boxed 12$", "12", 1.0),
    ("The final answer is 5", "5", 0.0),
    ("Answer: 12", "12", 1.0),
    (r"\boxed{\frac{1}{2}", r"\frac{1}{2}", 0.0),  # cut off before the closing brace
]


def run(coroutine):
    return asyncio.run(coroutine)


@pytest.mark.parametrize(("response", "label", "expected"), MATH_CASES, ids=[c[0][-40:] for c in MATH_CASES])
def test_math_reward_on_real_answer_formats(response, label, expected):
    assert run(math_reward(None, Sample(response=response, label=label))) == expected


BOXED_CASES = [case for case in MATH_CASES if "box" in case[0]]


@pytest.mark.parametrize(("response", "label", "expected"), BOXED_CASES[::4])
def test_deepscaler_agrees_with_math_on_the_boxed_answer_after_thinking(response, label, expected):
    thought = rf"<think>Let me guess \boxed{{999}} first. Then work it out.</think>{response}"
    assert run(deepscaler(None, Sample(response=thought, label=label))) == expected


def test_math_table_is_large_and_mixed():
    assert len(MATH_CASES) >= 40
    assert 10 <= sum(1 for case in MATH_CASES if case[2] == 0.0) <= len(MATH_CASES) - 10


def test_deepscaler_needs_the_end_of_thinking():
    label = "6"
    assert run(deepscaler(None, Sample(response=r"\boxed{6}", label=label))) == 0.0  # no </think>: unfinished
    assert run(deepscaler(None, Sample(response=r"<think>\boxed{6}</think> hmm \boxed{5}", label=label))) == 0.0
    assert run(deepscaler(None, Sample(response=r"<think>\boxed{5}</think> so \boxed{6}", label=label))) == 1.0
    assert run(deepscaler(None, Sample(response=r"###Response the answer is \boxed{6}", label=r"\boxed{6}"))) == 1.0
    assert run(deepscaler(None, Sample(response=r"<think></think>\boxed{\frac12}", label=["1/3", "0.5"]))) == 1.0
    assert run(deepscaler(None, Sample(response=r"<think></think>\boxed{6}", label=""))) == 0.0


def test_dapo_reads_the_answer_line_in_the_last_300_characters():
    def score(response, label):
        return run(dapo(None, Sample(response=response, label=label)))

    assert score("blah " * 100 + "Answer: 1,234", "1234") == {"score": 1.0, "acc": True, "pred": "1234"}
    assert score(r"Answer: $\frac{1}{2}$.", "0.5") == {"score": 1.0, "acc": True, "pred": r"\frac{1}{2}"}
    assert score("Answer: 7\nso that is it", "8") == {"score": -1.0, "acc": False, "pred": "7"}
    assert score("x" * 400 + r"\boxed{3}", "3")["acc"] is True  # no Answer line: the last boxed
    assert score("Answer: 3" + "x" * 400, "3") == {"score": -1.0, "acc": False, "pred": "[INVALID]"}
    assert score("I do not know", "3") == {"score": -1.0, "acc": False, "pred": "[INVALID]"}


def test_normal_form_keeps_the_space_a_command_needs():
    assert normalize_answer(r"2 \pi r") == r"2\pi r"
    assert normalize_answer(r"\left( 1, 2 \right)") == "(1,2)"
    assert normalize_answer(".5") == "0.5"
    assert normalize_answer("k = 3") == "3"


def test_plugin_registers_the_math_rewards_and_they_honour_the_contract():
    assert registered_by("rewards_math") == {"reward_functions": ["dapo", "deepscaler", "math"]}
    samples = [
        Sample(prompt="1+1?", tokens=[1, 2, 3], response=r"<think></think>\boxed{2}", response_length=1, label="2"),
        Sample(prompt="1/2?", response=r"Answer: 0.5", label=r"\frac{1}{2}", metadata={"source": "x"}),
        Sample(prompt="?", response="", label="3"),
    ]
    assert check_reward_function("math", samples) == [1.0, 1.0, 0.0]
    assert check_reward_function("deepscaler", samples) == [1.0, 0.0, 0.0]
    assert [r["score"] for r in check_reward_function("dapo", samples)] == [1.0, 1.0, -1.0]


def test_a_pathological_answer_is_given_up_on_in_time():
    start = time.monotonic()
    assert run(symbolically_equal("1", "10^{10^{10}}", timeout_s=1)) is False
    assert time.monotonic() - start < 10


def test_a_stuck_worker_is_killed_at_the_deadline_and_replaced():
    pool = WorkerPool(workers=1)
    request = {"gold": r"\sqrt{12}", "prediction": r"2\sqrt{3}", "timeout_s": 2}
    try:
        assert run(pool.ask(request, deadline_s=30)) == {"equal": True}
        stuck = pool.workers[0]
        os.kill(stuck.process.pid, signal.SIGSTOP)  # as if stuck in C code that no signal handler interrupts
        start = time.monotonic()
        with pytest.raises(TimeoutError, match="gave no answer within 0.5 s"):
            run(pool.ask(request, deadline_s=0.5))
        assert time.monotonic() - start < 5
        assert not stuck.alive()
        assert run(pool.ask(request, deadline_s=30)) == {"equal": True}  # a fresh worker
        assert len(pool.workers) == 1 and pool.workers[0] is not stuck
    finally:
        pool.close()
    assert not any(worker.alive() for worker in pool.workers)
