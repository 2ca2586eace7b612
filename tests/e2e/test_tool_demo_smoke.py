"""The tool demo (examples/tool-demo/run.sh) end to end at smoke size: multi-turn SFT on whole conversations, then
GRPO whose samples go through `multi_turn_tools` with the calculator plugin, with the real backends (Ray, Megatron
CPU, SGLang CPU). It does not check learning: that takes the full-size run (examples/tool-demo/README.md records it).
A long test (SLIME_LONG_TESTS=1; 2.5-5 min, not in CI for time): in CI, tests/sglang/test_sglang_multi_turn.py runs
`multi_turn_tools` on the real engines and the CPU demo's smoke test runs both `slime train` stages."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # demo_runs.py (pytest runs with importlib mode)
from demo_runs import check_quiet_end, read_metrics  # noqa: E402

ROOT = Path(__file__).parents[2]


@pytest.mark.slow
@pytest.mark.long
def test_tool_demo_smoke(tmp_path):
    out = tmp_path / "demo"
    result = subprocess.run(
        ["bash", str(ROOT / "examples" / "tool-demo" / "run.sh")],
        cwd=ROOT,
        env={**os.environ, "OUT": str(out), "SMOKE": "1"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    check_quiet_end(result)

    # SFT data: whole conversations, some of them calling the calculator and carrying its response.
    conversations = [json.loads(line)["messages"] for line in (out / "data" / "sft.jsonl").read_text().splitlines()]
    assert any(m["role"] == "tool" for c in conversations for m in c)
    assert any(all(m["role"] != "tool" for m in c) for c in conversations)
    assert any("train/loss" in r for r in read_metrics(out / "sft"))

    # GRPO: two rollouts through multi_turn_tools, whose rounds per sample are logged and plotted.
    grpo = read_metrics(out / "grpo")
    rounds = [
        r["multi_turn/multi_turn_metric/round_number_mean"]
        for r in grpo
        if "rollout/step" in r and "multi_turn/multi_turn_metric/round_number_mean" in r
    ]
    assert len(rounds) == 2 and all(1 <= value <= 2 for value in rounds)  # --max-turns 2
    assert [r["eval/step"] for r in grpo if "eval/arith" in r] == [0, 0, 1]
    samples = json.loads((out / "grpo" / "rollouts" / "rollout_0.json").read_text())["samples"]
    assert all(s["metadata"]["round_number"] in (1, 2) for s in samples)
    for run in ("sft", "grpo"):
        assert list((out / run / "wandb").glob("**/*.wandb")), f"{run}: no offline W&B run"
    assert (out / "grpo" / "report" / "multi_turn.png").is_file()
    assert "held-out eval reward over GRPO" in result.stdout
