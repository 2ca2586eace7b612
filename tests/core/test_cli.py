import subprocess
import sys

import pytest


def slime(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "slime.cli", *argv], capture_output=True, text=True, timeout=120)


def test_usage_lists_every_installed_command_with_its_provider():
    result = slime("--help")
    assert result.returncode == 0
    for command in ("train", "eval", "plugins", "download"):
        assert f"  {command} " in result.stdout
    lines = result.stdout.splitlines()
    # Commands that plugins add are listed too, with the distribution that provides them.
    report = next(line for line in lines if line.startswith("  report "))
    assert "metrics.jsonl" in report and report.endswith("[slime-metrics 0.1.0]")
    convert = next(line for line in lines if line.startswith("  convert "))
    assert "hf-to-megatron" in convert and convert.endswith("[slime-megatron 0.1.0]")


def test_unknown_command_is_one_line():
    result = slime("trian")
    assert result.returncode == 2
    assert result.stderr.startswith(
        "slime trian: error: unknown command 'trian'; commands: train, eval, plugins, download"
    )
    assert "report" in result.stderr  # registered by slime-metrics through slime_register_commands


@pytest.mark.parametrize(
    "argv,message",
    [
        (
            ["--rollout-batch-size", "3", "--global-batch-size", "2"],
            "--rollout-batch-size x --n-samples-per-prompt (3) is not divisible by --global-batch-size (2)",
        ),
        (["--rollout-batch"], "unknown flag --rollout-batch; did you mean --rollout-batch-size?"),
        (["--config", "missing.yaml"], "--config missing.yaml: file not found"),
    ],
)
def test_bad_flags_end_in_one_line_without_traceback(argv, message):
    result = slime("train", *argv)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr == f"slime train: error: {message}\n"


def test_train_help_shows_slime_and_plugin_flags():
    result = slime("train", "--help")
    assert result.returncode == 0
    assert "--rollout-batch-size" in result.stdout
    assert "--wandb-project" in result.stdout  # from slime-metrics' slime_add_arguments


def test_train_dry_run_prints_the_checked_configuration_and_stops(tmp_path):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text('{"input": "1+1="}\n{"input": "2+2="}\n')
    argv = ["train", "--dry-run", "--prompt-data", str(prompts), "--rollout-batch-size", "2", "--train-backend", "hf"]
    result = slime(*argv, "--output-dir", str(tmp_path / "out"), "--wandb-key", "k-123")
    assert result.returncode == 2 and result.stderr.startswith("slime train: error: ")  # no backend "hf" here
    result = slime(*argv[:-2], "--output-dir", str(tmp_path / "out"), "--wandb-key", "k-123")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert {"rollout_batch_size = 2", "global_batch_size = 2", "wandb_key = <redacted>"} <= set(lines)
    assert lines[-1] == "dry run: flags and inputs checked; nothing started"
    assert "k-123" not in result.stdout and not (tmp_path / "out").exists()
