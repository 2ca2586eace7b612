"""The CPU demo (examples/cpu-demo/run.sh) end to end at smoke size: every stage runs with the real backends (Ray,
Megatron CPU, SGLang CPU) and leaves its metrics, W&B offline run, HF export and report. It does not check learning:
that takes the full-size run (see examples/cpu-demo/README.md for what it measured). Every run ends quietly and leaves
none of its weight buffers in /dev/shm. A long test (SLIME_LONG_TESTS=1, not in CI for time) then runs the GRPO
stage's first rollout again with the same seed, without a trainer: it must sample the same answers (seeded SGLang
sampling from grpo.yaml; tests/sglang/test_sglang_deterministic.py checks the engine's half of it in CI)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # demo_runs.py (pytest runs with importlib mode)
from demo_runs import NATIVE_CRASH, check_quiet_end, read_metrics  # noqa: E402

ROOT = Path(__file__).parents[2]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str], subprocess.CompletedProcess]:
    out = tmp_path_factory.mktemp("cpu-demo") / "demo"
    env = {**os.environ, "OUT": str(out), "SMOKE": "1"}
    result = subprocess.run(
        ["bash", str(ROOT / "examples" / "cpu-demo" / "run.sh")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    return out, env, result


@pytest.mark.slow
def test_cpu_demo_smoke(demo):
    out, _, result = demo
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    check_quiet_end(result)  # both stages (SFT, GRPO)

    # prepare.py: the model, its tokenizer and the three data files.
    assert (out / "model" / "config.json").is_file() and (out / "model" / "tokenizer.json").is_file()
    train = [json.loads(line) for line in (out / "data" / "train.jsonl").read_text().splitlines()]
    held_out = [json.loads(line) for line in (out / "data" / "eval.jsonl").read_text().splitlines()]
    assert len(train) == 80 and len(held_out) == 20
    assert not {r["prompt"][0]["content"] for r in train} & {r["prompt"][0]["content"] for r in held_out}

    # SFT: one rollout trained with sft_loss, eval before it, and the HF export GRPO starts from.
    sft = read_metrics(out / "sft")
    assert [r["rollout/step"] for r in sft if "rollout/raw_reward" in r] == [0]
    assert any("train/loss" in r for r in sft)
    assert [r["eval/step"] for r in sft if "eval/arith" in r][0] == 0
    assert (out / "sft" / "hf" / "model.safetensors").is_file()

    # GRPO: two rollouts from the export, evaluated before and after each.
    grpo = read_metrics(out / "grpo")
    assert [r["rollout/step"] for r in grpo if "rollout/raw_reward" in r] == [0, 1]
    assert [r["eval/step"] for r in grpo if "eval/arith" in r] == [0, 0, 1]
    for run in ("sft", "grpo"):
        assert list((out / run / "wandb").glob("**/*.wandb")), f"{run}: no offline W&B run"
        assert "<html" in (out / run / "report" / "index.html").read_text().lower()
    assert "held-out eval reward over GRPO" in result.stdout


@pytest.mark.slow
@pytest.mark.long
def test_the_grpo_stage_rerun_samples_the_same_first_rollout(demo):
    """The same GRPO command again, its first rollout only (no trainer: the engine serves the same SFT export the
    trainer pushed first): the same responses and rewards as the first run's rollout 0."""
    out, env, result = demo
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    rerun = out / "grpo-rerun"
    again = subprocess.run(
        [
            sys.executable, "-m", "slime.cli", "train", "--config", str(ROOT / "examples" / "cpu-demo" / "grpo.yaml"),
            "--hf-checkpoint", str(out / "sft" / "hf"), "--prompt-data", str(out / "data" / "train.jsonl"),
            "--eval-prompt-data", "arith", str(out / "data" / "eval.jsonl"), "--skip-eval-before-train",
            "--rollout-batch-size", "4", "--n-samples-per-prompt", "4", "--global-batch-size", "16",
            "--num-rollout", "1", "--debug-rollout-only",
            "--save-debug-rollout-data", str(rerun / "rollout_{rollout_id}.json"),
            "--output-dir", str(rerun),
        ],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert again.returncode == 0, again.stderr[-3000:]
    assert not NATIVE_CRASH.search(again.stdout + again.stderr), again.stderr[-3000:]
    first = json.loads((out / "grpo" / "rollouts" / "rollout_0.json").read_text())["samples"]
    second = json.loads((rerun / "rollout_0.json").read_text())["samples"]
    assert len(first) == 16
    assert [s["tokens"] for s in second] == [s["tokens"] for s in first]
    assert [s["reward"] for s in second] == [s["reward"] for s in first]
    assert len({tuple(s["tokens"]) for s in first}) > 1  # sampled at temperature 1, not one repeated answer
