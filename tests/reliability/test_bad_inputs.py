"""Bad inputs: each must end in one clear line naming the file (and line), flag or plugin, with exit code != 0, no
traceback, and nothing changed in the output and checkpoint directories.

Every case runs the real ``slime`` CLI on real files. Most run in this process through ``slime.cli.main`` (one
``slime`` process costs ~5 s of CPU here, mostly importing torch); the cases marked ``subprocess`` run
``python -m slime.cli`` as a user would, to show that what reaches the terminal is the one line and nothing else.
"""

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from slime.cli import main

PLUGIN_CODE = """
async def reward_ok(args, sample):
    return 1.0


async def reward_text(args, sample):
    return "good"  # a reward must be a number or a dict of numbers


def two_argument_loss(args, batch):  # neither slime's loss form nor ours
    return 0.0, {}
"""
ROWS = [f'{{"prompt": "{i}+1=", "label": "{i + 1}"}}' for i in range(4)]


@dataclass(frozen=True)
class Inputs:
    root: Path
    model: Path
    model_without_template: Path
    data: Path  # 4 good rows: {"prompt", "label"}
    plugins: Path  # a folder on the import path with user modules (rewards, a module that fails to import)
    broken_dist: Path  # a folder holding an installed distribution whose entry point fails to import


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory, tiny_model: Path):
    root = tmp_path_factory.mktemp("bad-inputs")
    model = tiny_model
    model_without_template = root / "model-no-template"
    shutil.copytree(model, model_without_template)
    (model_without_template / "chat_template.jinja").unlink()
    data = root / "train.jsonl"
    data.write_text("\n".join(ROWS) + "\n")

    plugins = root / "user-code"
    plugins.mkdir()
    (plugins / "rel_plugins.py").write_text(PLUGIN_CODE)
    (plugins / "rel_broken_reward.py").write_text('raise RuntimeError("config server unreachable")\n')

    broken_dist = root / "site"
    (broken_dist / "rel_broken_plugin").mkdir(parents=True)
    (broken_dist / "rel_broken_plugin" / "__init__.py").write_text("import a_module_that_is_not_installed\n")
    info = broken_dist / "rel_broken_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: rel-broken-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[slime]\nrel_broken = rel_broken_plugin\n")

    sys.path.insert(0, str(plugins))
    yield Inputs(root, model, model_without_template, data, plugins, broken_dist)
    sys.path.remove(str(plugins))


def base_argv(inputs: Inputs, case_dir: Path, command: str = "train") -> list[str]:
    """A valid run with core's small HF backends; each case appends what makes it bad (the last flag wins)."""
    argv = [
        command,
        "--train-backend", "slime_testkit.hf_trainer.HFTrainer",
        "--rollout-backend", "slime_testkit.hf_engine.HFEngine",
        "--actor-num-gpus-per-node", "1", "--rollout-num-gpus", "1",
        "--hf-checkpoint", str(inputs.model), "--prompt-data", str(inputs.data),
        "--input-key", "prompt", "--label-key", "label",
        "--rollout-batch-size", "2", "--n-samples-per-prompt", "2", "--rollout-max-response-len", "4",
        "--update-weight-transport", "disk",
        "--output-dir", str(case_dir / "out"), "--save", str(case_dir / "ckpt"),
    ]  # fmt: skip
    if command == "eval":
        argv = [a for a in argv if a not in ("--save", str(case_dir / "ckpt"))]
    return argv


# ---- how cases make their bad files (each returns the flags to append) ----


def write(case_dir: Path, name: str, content: bytes | str) -> str:
    path = case_dir / name
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return str(path)


def jsonl(text: bytes | str, name: str = "train.jsonl") -> Callable[[Path, Inputs], list[str]]:
    return lambda d, i: ["--prompt-data", write(d, name, text)]


def parquet(table: pa.Table, cut: bool = False) -> Callable[[Path, Inputs], list[str]]:
    def make(d: Path, i: Inputs) -> list[str]:
        path = d / "train.parquet"
        pq.write_table(table, path)
        if cut:  # a download that stopped half-way
            path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
        return ["--prompt-data", str(path)]

    return make


def config(text: bytes | str) -> Callable[[Path, Inputs], list[str]]:
    return lambda d, i: ["--config", write(d, "run.yaml", text)]


def flags(*argv: str) -> Callable[[Path, Inputs], list[str]]:
    return lambda d, i: list(argv)


def empty_dir(d: Path, i: Inputs) -> list[str]:
    (d / "model").mkdir()
    return ["--hf-checkpoint", str(d / "model")]


def bad_model_config(d: Path, i: Inputs) -> list[str]:
    shutil.copytree(i.model, d / "model")
    (d / "model" / "config.json").write_text('{"model_type": "qwen2", ')  # a copy cut short
    return ["--hf-checkpoint", str(d / "model")]


def megatron_model(*flags: str, **config: object) -> Callable[[Path, Inputs], list[str]]:
    """The megatron backend on a copy of the model whose config.json has ``config`` changed (a field given as None is
    removed), with ``flags``."""

    def make(d: Path, i: Inputs) -> list[str]:
        shutil.copytree(i.model, d / "model")
        path = d / "model" / "config.json"
        changed = {**json.loads(path.read_text()), **config}
        path.write_text(json.dumps({name: value for name, value in changed.items() if value is not None}))
        return ["--train-backend", "megatron", "--hf-checkpoint", str(d / "model"), *flags]

    return make


MOE = {
    "model_type": "qwen3_moe",
    "num_experts": 4,
    "num_experts_per_tok": 2,
    "moe_intermediate_size": 32,
    "tie_word_embeddings": False,  # as SGLang serves Qwen3-MoE
}


def data_dir(d: Path, i: Inputs) -> list[str]:
    (d / "data").mkdir()
    return ["--prompt-data", str(d / "data")]


GOOD = ROWS[0] + "\n"
PROMPTS = pa.table({"prompt": ["1+1=", "2+1="], "label": ["2", "3"]})


@dataclass(frozen=True)
class Case:
    name: str
    make: Callable[[Path, Inputs], list[str]]
    expected: str  # a fragment of the error line; "{dir}": the case's folder, "{no_template}": that model's
    command: str = "train"
    subprocess: bool = False  # run as a real process (the others run in this process)


# One case per line, so the corpus reads as a table.
# fmt: off
CASES = [
    # prompt data: jsonl
    Case("jsonl: malformed line", jsonl(GOOD * 2 + '{"prompt": "x", "label": }\n'), "{dir}/train.jsonl line 3: invalid JSON"),
    Case("jsonl: truncated last line", jsonl(GOOD + '{"prompt": "2+1=", "lab'), "{dir}/train.jsonl line 2: invalid JSON"),
    Case("jsonl: a row that is not an object", jsonl('["1+1=", "2"]\n'), "train.jsonl line 1: expected a JSON object, got array"),
    Case("jsonl: empty file", jsonl(""), "{dir}/train.jsonl: empty file (no rows)"),
    Case("jsonl: only blank lines", jsonl("\n  \n\n"), "{dir}/train.jsonl: empty file (no rows)"),
    Case("jsonl: not UTF-8", jsonl(GOOD.encode() + b'{"prompt": "caf\xe9", "label": "1"}\n'), "{dir}/train.jsonl line 2: not valid UTF-8 (byte 0xe9", subprocess=True),
    Case("jsonl: wrong input key", jsonl('{"question": "1+1=", "label": "2"}\n'), "train.jsonl line 1: no key 'prompt' (from --input-key); keys present: label, question"),
    Case("jsonl: label missing on one line", jsonl(GOOD * 2 + '{"prompt": "3+1="}\n'), "train.jsonl line 3: no key 'label' (from --label-key)"),
    Case("jsonl: prompt of the wrong type", jsonl('{"prompt": 7, "label": "2"}\n'), "line 1: 'prompt' (from --input-key) must be a string or a list of messages, got number"),
    Case("jsonl: metadata not an object", jsonl('{"prompt": "1+1=", "label": "2", "metadata": [1]}\n'), "line 1: 'metadata' (from --metadata-key) must be an object, got array"),
    # prompt data: parquet
    Case("parquet: truncated file", parquet(PROMPTS, cut=True), "{dir}/train.parquet: not a readable parquet file"),
    Case("parquet: not parquet at all", jsonl(GOOD, name="train.parquet"), "{dir}/train.parquet: not a readable parquet file"),
    Case("parquet: no rows", parquet(PROMPTS.slice(0, 0)), "{dir}/train.parquet: empty file (no rows)"),
    Case("parquet: wrong input key", parquet(pa.table({"question": ["1+1="], "label": ["2"]})), "train.parquet row 0: no key 'prompt' (from --input-key)"),
    # prompt data: paths
    Case("data: missing file", flags("--prompt-data", "/nonexistent/train.jsonl"), "/nonexistent/train.jsonl: no such file (from --prompt-data)"),
    Case("data: a directory", data_dir, "{dir}/data: not a file (from --prompt-data)"),
    Case("data: unsupported format", jsonl("prompt,label\n1+1=,2\n", name="train.csv"), "{dir}/train.csv: unsupported prompt data format (from --prompt-data)"),
    Case("data: malformed slice", lambda d, i: ["--prompt-data", f"{i.data}@[a:b]"], "bad slice in '"),
    Case("data: slice selects no rows", lambda d, i: ["--prompt-data", f"{i.data}@[10:20]"], "@[10:20]: the slice selects no rows (the file has 4)"),
    Case("data: every prompt longer than the limit", flags("--rollout-max-prompt-len", "1"), "train.jsonl: all 4 prompts are longer than --rollout-max-prompt-len 1 tokens"),
    Case("data: fewer prompts than one rollout", flags("--rollout-batch-size", "8"), "train.jsonl: 4 prompts, fewer than --rollout-batch-size 8"),
    # YAML
    Case("yaml: syntax error", config("rollout_batch_size: 2\nseed: [1, 2\n"), "{dir}/run.yaml line 3: invalid YAML", subprocess=True),
    Case("yaml: not a mapping", config("- rollout_batch_size\n- 2\n"), "{dir}/run.yaml: expected a mapping of flag names to values, got list"),
    Case("yaml: unknown key", config("rollout_batch_sise: 2\n"), "run.yaml: unknown key 'rollout_batch_sise' (no flag --rollout-batch-sise); did you mean --rollout-batch-size?"),
    Case("yaml: bad value", config("rollout_batch_size: two\n"), "run.yaml: argument --rollout-batch-size: invalid int value: 'two'"),
    Case("yaml: not UTF-8", config(b"seed: \xff\n"), "--config {dir}/run.yaml: cannot read"),
    Case("yaml: missing file", flags("--config", "/nonexistent/run.yaml"), "--config /nonexistent/run.yaml: file not found"),
    Case("eval yaml: dataset without a path", lambda d, i: ["--eval-config", write(d, "eval.yaml", "eval:\n  datasets:\n    - {name: heldout}\n")], "eval.yaml: eval.datasets[0]: every dataset needs 'path'"),
    Case("eval yaml: syntax error", lambda d, i: ["--eval-config", write(d, "eval.yaml", "eval:\n  datasets: [{name: a\n")], "{dir}/eval.yaml line 3: invalid YAML"),
    # flags
    Case("flag: unknown", flags("--rollout-batch", "2"), "unknown flag --rollout-batch; did you mean --rollout-batch-size?", subprocess=True),
    Case("flag: bad value", flags("--n-samples-per-prompt", "many"), "argument --n-samples-per-prompt: invalid int value: 'many'"),
    Case("flags: KL in reward and as a loss", flags("--kl-coef", "0.1", "--use-kl-loss"), "--kl-coef (KL in the reward) and --use-kl-loss (KL as a loss) cannot be used together"),
    Case("flags: rollout-only and train-only", flags("--debug-rollout-only", "--debug-train-only"), "--debug-rollout-only and --debug-train-only cannot be used together"),
    Case("flags: dump path with an unknown placeholder", flags("--load-debug-rollout-data", "/tmp/dump_{step}.json"), "--load-debug-rollout-data /tmp/dump_{{step}}.json: only {{rollout_id}} can be filled in"),
    Case("dumps: missing rollout dump", flags("--load-debug-rollout-data", "/nonexistent/rollout_{rollout_id}.json"), "/nonexistent/rollout_0.json (--load-debug-rollout-data, rollout 0): no such file"),
    Case("dumps: a dump that is not JSON", lambda d, i: ["--load-debug-rollout-data", write(d, "rollout_0.pt", "PK\x03\x04")], "{dir}/rollout_0.pt (--load-debug-rollout-data, rollout 0): not a JSON rollout dump"),
    Case("flags: --use-opd without a teacher", flags("--use-opd", "--opd-type", "megatron"), "--use-opd --opd-type megatron needs --opd-teacher-load (the teacher's checkpoint)"),
    Case("opd: missing teacher checkpoint", flags("--use-opd", "--opd-type", "megatron", "--opd-teacher-load", "/nonexistent/teacher"), "--opd-teacher-load /nonexistent/teacher: no such directory"),
    Case("ppo: a train backend without a critic", flags("--advantage-estimator", "ppo"), "--advantage-estimator ppo needs a critic (a value model), which the train backend 'slime_testkit.hf_trainer.HFTrainer' cannot train; use --train-backend megatron"),
    Case("ppo: critic-only steps without ppo", flags("--num-critic-only-steps", "2"), "--num-critic-only-steps trains PPO's critic alone first; it needs --advantage-estimator ppo"),
    Case("ppo: role config that is no list", megatron_model("--advantage-estimator", "ppo", "--megatron-config-path", "/dev/null"), "--megatron-config-path /dev/null: expected a top-level 'megatron' list of role entries"),
    Case("ppo: role config with an unknown argument", lambda d, i: megatron_model("--advantage-estimator", "ppo")(d, i) + ["--megatron-config-path", write(d, "roles.yaml", "megatron:\n  - {role: critic, overrides: {learning_rate: 1e-5}}\n")], "--megatron-config-path {dir}/roles.yaml: role critic overrides 'learning_rate', which is no argument (names as lr, not --lr)"),
    Case("ppo: critic with another parallel layout", lambda d, i: megatron_model("--advantage-estimator", "ppo")(d, i) + ["--megatron-config-path", write(d, "roles.yaml", "megatron:\n  - {role: critic, overrides: {tensor_model_parallel_size: 2}}\n")], "role critic sets tensor_model_parallel_size=2; actor and critic share the train ranks and their layout"),
    Case("ppo: missing role config", megatron_model("--advantage-estimator", "ppo", "--megatron-config-path", "/nonexistent/roles.yaml"), "--megatron-config-path /nonexistent/roles.yaml: cannot read it (No such file or directory)"),
    Case("flags: batch sizes that do not divide", flags("--global-batch-size", "3"), "--rollout-batch-size x --n-samples-per-prompt (4) is not divisible by --global-batch-size (3)"),
    Case("flag: JSON flag that is not JSON", flags("--apply-chat-template-kwargs", "{enable_thinking: true}"), "argument --apply-chat-template-kwargs: invalid JSON"),
    Case("eval: no eval data", flags(), "slime eval needs --eval-prompt-data or --eval-config", command="eval"),
    Case("eval: a train-only debug flag", flags("--eval-prompt-data", "heldout", "/nonexistent/heldout.jsonl", "--debug-train-only"), "--debug-train-only (or --load-debug-rollout-data) is for slime train; slime eval only evaluates", command="eval"),
    Case("eval: missing eval dataset", flags("--eval-prompt-data", "heldout", "/nonexistent/heldout.jsonl"), "/nonexistent/heldout.jsonl: no such file (from eval dataset 'heldout')", command="eval"),
    # model
    Case("model: missing directory", flags("--hf-checkpoint", "/nonexistent/model"), "--hf-checkpoint /nonexistent/model: no such directory"),
    Case("model: directory without config.json", empty_dir, "--hf-checkpoint {dir}/model: no config.json"),
    Case("model: config.json cut short", bad_model_config, "{dir}/model/config.json: not valid JSON"),
    Case("megatron: unsupported model type", megatron_model(model_type="mixtral"), "--hf-checkpoint {dir}/model: model type mixtral is not supported yet (supported: qwen2, qwen3, qwen3_moe, llama, glm4, glm4_moe)"),
    Case("megatron: config.json without a shape field", megatron_model(num_attention_heads=None), "--hf-checkpoint {dir}/model: config.json has no num_attention_heads (the model's shape needs it)"),
    Case("megatron: GLM4's norm flag on a model without it", megatron_model("--post-mlp-layernorm"), "--post-mlp-layernorm (True) disagrees with {dir}/model/config.json: model_type is qwen2"),
    Case("megatron: expert parallelism not dividing the experts", megatron_model("--expert-model-parallel-size", "3", "--actor-num-gpus-per-node", "3", **MOE), "--expert-model-parallel-size 3 does not divide the model's 4 experts"),
    Case("model: tokenizer without a chat template", lambda d, i: ["--hf-checkpoint", str(i.model_without_template), "--apply-chat-template"], "--apply-chat-template: the tokenizer in '{no_template}' (from --hf-checkpoint) has no chat template"),
    # plugins
    Case("plugin: entry point fails to import", flags(), "plugin 'rel_broken' (distribution rel-broken-plugin 0.1) failed to import 'rel_broken_plugin': ModuleNotFoundError", subprocess=True),
    Case("plugin: unknown reward type", flags("--rm-type", "nope"), "unknown reward function 'nope' (from --rm-type); registered:"),
    Case("plugin: reward module not installed", flags("--custom-rm-path", "not_installed.reward"), "--custom-rm-path 'not_installed.reward': cannot import module 'not_installed'"),
    Case("plugin: reward module raises on import", flags("--custom-rm-path", "rel_broken_reward.reward"), "--custom-rm-path 'rel_broken_reward.reward': cannot import module 'rel_broken_reward': RuntimeError: config server unreachable"),
    Case("plugin: reward function not in its module", flags("--custom-rm-path", "rel_plugins.nope"), "--custom-rm-path 'rel_plugins.nope': module 'rel_plugins' has no attribute 'nope'"),
    Case("plugin: unknown train backend", flags("--train-backend", "nope"), "unknown train backend 'nope' (from --train-backend)"),
    Case("plugin: unknown rollout function", flags("--rollout-function-path", "nope"), "unknown rollout function 'nope' (from --rollout-function-path)"),
    Case("plugin: hook function not in its module", flags("--rollout-data-postprocess-path", "rel_plugins.nope"), "--rollout-data-postprocess-path 'rel_plugins.nope': module 'rel_plugins' has no attribute 'nope'"),
    Case("plugin: sample hook module not installed", flags("--rollout-sample-hook-path", "not_installed.hook"), "--rollout-sample-hook-path 'not_installed.hook': cannot import module 'not_installed'"),
    Case("flags: custom_loss without its function", flags("--loss-type", "custom_loss"), "--loss-type custom_loss needs --custom-loss-function-path"),
    Case("plugin: custom loss of neither form", flags("--loss-type", "custom_loss", "--custom-loss-function-path", "rel_plugins.two_argument_loss"), "--custom-loss-function-path 'rel_plugins.two_argument_loss': two_argument_loss(args, batch) is neither slime's loss f(args, batch, logits, sum_of_sample_mean) nor ours f(args, batch, reducer)"),
]
# fmt: on


def snapshot(*roots: Path) -> dict[str, bytes | None]:
    """Every file (its bytes) and folder (None) under ``roots``."""
    found: dict[str, bytes | None] = {}
    for root in roots:
        for path in sorted(root.rglob("*")):
            found[str(path)] = path.read_bytes() if path.is_file() else None
    return found


def run_case(case: Case, inputs: Inputs, case_dir: Path, capfd: pytest.CaptureFixture) -> tuple[int, str, str]:
    argv = base_argv(inputs, case_dir, case.command) + case.make(case_dir, inputs)
    if case.subprocess:
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(inputs.plugins), os.environ.get("PYTHONPATH", "")]))
        if case.name.startswith("plugin: entry point"):
            env["PYTHONPATH"] = str(inputs.broken_dist) + os.pathsep + env["PYTHONPATH"]
        result = subprocess.run(
            [sys.executable, "-m", "slime.cli", *argv], capture_output=True, text=True, env=env, timeout=300
        )
        return result.returncode, result.stdout, result.stderr
    try:
        code = main(argv)
    except BaseException as exc:  # an exception escaping main() is a traceback for the user
        code = f"raised {type(exc).__name__}: {exc}"
    captured = capfd.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_bad_input_ends_in_one_clear_line(case: Case, inputs: Inputs, tmp_path: Path, capfd, scoreboard) -> None:
    for folder in ("out", "ckpt"):  # what an earlier run left there must survive a failed start untouched
        (tmp_path / folder / "earlier").mkdir(parents=True)
        (tmp_path / folder / "earlier" / "metrics.jsonl").write_text('{"rollout/step": 0}\n')
    before = snapshot(tmp_path / "out", tmp_path / "ckpt")

    code, out, err = run_case(case, inputs, tmp_path, capfd)

    lines = [line for line in err.splitlines() if line.strip()]
    expected = case.expected.format(dir=tmp_path, no_template=inputs.model_without_template)
    prefix = f"slime {case.command}: error: "
    one_line = lines == [lines[-1]] if lines else False
    clear = (
        isinstance(code, int)
        and code != 0
        and one_line
        and lines[-1].startswith(prefix)
        and expected in lines[-1]
        and "Traceback" not in out + err
        and out == ""
        and snapshot(tmp_path / "out", tmp_path / "ckpt") == before
    )
    scoreboard.bad_input(case.name, clear)
    assert code == 2, (code, err[-3000:])
    assert "Traceback" not in out + err
    assert out == ""
    assert len(lines) == 1, err[-3000:]
    assert lines[0].startswith(prefix)
    assert expected in lines[0]
    assert snapshot(tmp_path / "out", tmp_path / "ckpt") == before


def test_reward_of_the_wrong_type_stops_the_run_with_one_line(inputs: Inputs, tmp_path: Path, scoreboard) -> None:
    """A broken plugin found only once the run is going (inside a Ray actor) still reaches the user as one line.

    ``slime eval``: the same path from a Ray actor to the terminal as ``slime train``, with one actor instead of two.
    The run has started, so it has written its own files; what was in the output directory before stays as it was.
    """
    earlier = tmp_path / "out" / "earlier" / "metrics.jsonl"
    earlier.parent.mkdir(parents=True)
    earlier.write_text('{"rollout/step": 0}\n')
    argv = base_argv(inputs, tmp_path, "eval") + ["--eval-prompt-data", "heldout", str(inputs.data)]
    argv += ["--custom-rm-path", "rel_plugins.reward_text"]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(inputs.plugins), os.environ.get("PYTHONPATH", "")]))
    result = subprocess.run(
        [sys.executable, "-m", "slime.cli", *argv], capture_output=True, text=True, env=env, timeout=400
    )
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    error_lines = [line for line in lines if ": error: " in line]
    expected = (
        "slime eval: error: reward function 'rel_plugins.reward_text' (from --custom-rm-path) returned str 'good'; "
        "a reward function returns a number or a dict of numbers"
    )
    clear = (
        result.returncode == 2
        and lines[-1:] == [expected]
        and error_lines == [expected]
        and "Traceback" not in result.stdout + result.stderr
        and earlier.read_text() == '{"rollout/step": 0}\n'
    )
    scoreboard.bad_input("reward function returns the wrong type (inside the run)", clear)
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stdout + result.stderr, result.stderr[-3000:]
    assert lines[-1] == expected
    assert error_lines == [expected]
    assert earlier.read_text() == '{"rollout/step": 0}\n'
