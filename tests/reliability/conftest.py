"""The reliability suite's scoreboard: every test records what it injected and what happened, and the session ends
with one table (faults injected / survived / data lost, bad inputs tried / clear errors)."""

import json
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from slime_testkit.tiny_model import build_tiny_model


@dataclass
class Fault:
    """One injected fault. A test records it when it injects it, as not survived, and sets ``survived`` only once
    every assertion about it has passed: a test that fails (or stops) before then leaves it counted as not survived."""

    name: str
    survived: bool = False
    data_lost: int = 0  # prompts lost or trained twice


@dataclass
class Scoreboard:
    faults: list[Fault] = field(default_factory=list)
    bad_inputs: list[tuple[str, bool]] = field(default_factory=list)  # (case, ended in one clear line)

    def fault(self, name: str, survived: bool = False, data_lost: int = 0) -> Fault:
        row = Fault(name, survived, data_lost)
        self.faults.append(row)
        return row

    def bad_input(self, name: str, clear: bool) -> None:
        self.bad_inputs.append((name, clear))

    def table(self) -> str:
        survived = sum(f.survived for f in self.faults)
        lost = sum(f.data_lost for f in self.faults)
        clear = sum(ok for _, ok in self.bad_inputs)
        rows = [
            ("faults injected", len(self.faults)),
            ("faults survived", survived),
            ("prompts lost or trained twice", lost),
            ("bad inputs tried", len(self.bad_inputs)),
            ("bad inputs with one clear error", clear),
        ]
        failed = [f.name for f in self.faults if not f.survived or f.data_lost]
        failed += [name for name, ok in self.bad_inputs if not ok]
        lines = [f"{label:<34}{value:>6}" for label, value in rows]
        lines += [f"  failed: {name}" for name in failed]
        return "\n".join(lines)


SCOREBOARD = Scoreboard()


@pytest.fixture(scope="session")
def scoreboard() -> Scoreboard:
    return SCOREBOARD


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny HF model directory (config, weights, tokenizer with a chat template), built once for the suite.

    Tests must not change it: copy it to make a broken variant."""
    return build_tiny_model(tmp_path_factory.mktemp("reliability") / "model")


def pytest_terminal_summary(terminalreporter) -> None:
    if SCOREBOARD.faults or SCOREBOARD.bad_inputs:
        terminalreporter.section("reliability")
        terminalreporter.write_line(SCOREBOARD.table())


@pytest.fixture(scope="session")
def tiny_run_files(tmp_path_factory, tiny_model: Path) -> tuple[Path, Path]:
    """The fault tests' tiny HF model and 10 prompts (``{"prompt": "3+1=", "label": "4"}``, labels all different)."""
    data = tmp_path_factory.mktemp("tiny-run") / "train.jsonl"
    data.write_text("".join(json.dumps({"prompt": f"{i}+1=", "label": str(i + 1)}) + "\n" for i in range(10)))
    return tiny_model, data
