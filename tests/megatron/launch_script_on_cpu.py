"""A launch script of slime's (``launch_scripts.SCRIPTS``) run on this CPU machine, pointed at a tiny model.

What changes, and nothing else:
- the model: a tiny one of the script's architecture; its shape flags (``--num-layers``, ``--hidden-size``, ...) take
  the tiny config.json's values, the family flags (``--swiglu``, ``--qk-layernorm``, untied embeddings, ...) stay;
- paths: ``/root`` becomes a local folder holding the tiny model, its ``_torch_dist`` checkpoint (``slime convert``,
  as slime's users make theirs) and made-up data in the files the script names;
- the flags that need a GPU are left out (on CPU each is a one-line error: test_megatron_flags.py);
- sizes, appended (the last flag wins): two "GPUs", tensor, expert and engine parallelism at most 2, context
  parallelism 1 (megatron-core's attention without TransformerEngine has none), one rollout of 16 samples of 16
  tokens.

Usage (what the test runs; by hand for the other scripts): python tests/megatron/launch_script_on_cpu.py SCRIPT DIR
[EXTRA FLAGS...]
"""

import json
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))  # launch_scripts.py (pytest runs with importlib mode)
from launch_scripts import MODELS, SCRIPTS  # noqa: E402

# The script, its model preset and the folder under /root its checkpoint flags name.
SCRIPT_MODELS = {
    "run-qwen3-4B.sh": ("qwen3-4B", "Qwen3-4B"),
    "run-qwen3-32B.sh": ("qwen3-32B", "Qwen3-32B"),
    "run-glm4-9B.sh": ("glm4-9B", "GLM-Z1-9B-0414"),
    "run-qwen3-4B-base-sft.sh": ("qwen3-4B", "Qwen3-4B-Base"),
    "run-qwen3-30B-A3B.sh": ("qwen3-30B-A3B", "Qwen3-30B-A3B"),
}
GPU_ONLY = (
    "--attention-backend flash",
    "--optimizer-cpu-offload",
    "--overlap-cpu-optimizer-d2h-h2d",
    "--use-precision-aware-optimizer",
)
SMALL = """--num-rollout 1 --rollout-batch-size 4 --n-samples-per-prompt 4 --global-batch-size 16
    --rollout-max-response-len 16 --eval-max-response-len 16 --n-samples-per-eval-prompt 2"""
# Megatron shape flag -> the config.json field it must equal.
SHAPE = {
    "--num-layers": "num_hidden_layers",
    "--hidden-size": "hidden_size",
    "--ffn-hidden-size": "intermediate_size",
    "--num-attention-heads": "num_attention_heads",
    "--num-query-groups": "num_key_value_heads",
    "--kv-channels": "head_dim",
    "--vocab-size": "vocab_size",
    "--norm-epsilon": "rms_norm_eps",
    "--num-experts": "num_local_experts",  # transformers 5 writes Qwen3-MoE's num_experts under this name
    "--moe-router-topk": "num_experts_per_tok",
    "--moe-ffn-hidden-size": "moe_intermediate_size",
}


def _arch(preset: str) -> str:
    if preset.endswith("-A3B"):
        return "qwen3_moe"
    return {"qwen3": "qwen3", "glm4": "glm4", "qwen2.5": "qwen2", "llama3.1": "llama"}[preset.split("-")[0]]


def tiny_shape_args(preset: str, config: dict) -> str:
    """The preset's flags with the tiny model's shape."""
    rope_theta = config.get("rope_parameters", {}).get("rope_theta")
    values = {**config, "rotary_base": None if rope_theta is None else int(rope_theta)}
    shape = {**SHAPE, "--rotary-base": "rotary_base"}
    flags = MODELS[preset].split()
    for i, flag in enumerate(flags[:-1]):
        if flag in shape and values.get(shape[flag]) is not None:
            flags[i + 1] = str(values[shape[flag]])
        if flag == "--moe-layer-freq":  # every layer sparse, as the script's
            flags[i + 1] = "[" + ",".join(["1"] * config["num_hidden_layers"]) + "]"
    return " ".join(flags)


def prepare(script: str, root: Path) -> list[str]:
    """Write the tiny model, its megatron checkpoint and the data under ``root``; return the CPU argument list."""
    from slime_testkit.tiny_model import build_tiny_glm4_model, build_tiny_model, build_tiny_moe_model

    preset, folder = SCRIPT_MODELS[script]
    untied = "--untie-embeddings-and-output-weights" in MODELS[preset]
    if _arch(preset) == "glm4":
        model = build_tiny_glm4_model(root / folder, seed=0)
    elif _arch(preset) == "qwen3_moe":  # untied and every layer sparse: what SGLang serves (README's model table)
        model = build_tiny_moe_model(root / folder, tie_word_embeddings=False, mlp_only_layers=(), seed=0)
    else:
        model = build_tiny_model(root / folder, arch=_arch(preset), tie_word_embeddings=not untied, seed=0)
    convert = [sys.executable, "-m", "slime.cli", "convert", "hf-to-megatron", str(model), f"{model}_torch_dist"]
    subprocess.run(convert, check=True, capture_output=True)
    _write_data(root)

    text = " ".join(SCRIPTS[script].split())
    text = text.replace(
        " ".join(MODELS[preset].split()), tiny_shape_args(preset, json.loads((model / "config.json").read_text()))
    )
    for flag in GPU_ONLY:
        text = text.replace(flag, "")
    argv = text.replace("/root/", f"{root}/").split()
    return argv + _small_world(argv) + SMALL.split()


def _small_world(argv: list[str]) -> list[str]:
    def value(flag: str, default: int) -> int:
        return int(argv[argv.index(flag) + 1]) if flag in argv else default

    small = ["--actor-num-gpus-per-node", "2", "--context-parallel-size", "1"]
    small += ["--tensor-model-parallel-size", str(min(value("--tensor-model-parallel-size", 1), 2))]
    small += ["--rollout-num-gpus-per-engine", str(min(value("--rollout-num-gpus-per-engine", 1), 2))]
    small += ["--expert-model-parallel-size", str(min(value("--expert-model-parallel-size", 1), 2))]
    if "--rollout-num-gpus" in argv:
        small += ["--rollout-num-gpus", "2"]
    return small


def _write_data(root: Path) -> None:
    """The sums of the CPU demo in the files the scripts read: dapo-math's and aime's format (prompt as chat
    messages, label) and openhermes' (a ``messages`` conversation)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    problems = [(a, b) for a in range(10) for b in range(10)]
    rows = [{"prompt": [{"role": "user", "content": f"What is {a} + {b}?"}], "label": str(a + b)} for a, b in problems]
    for path, part in (
        (root / "dapo-math-17k" / "dapo-math-17k.jsonl", rows[:80]),
        (root / "aime-2024" / "aime-2024.jsonl", rows[80:84]),
    ):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(json.dumps(row) + "\n" for row in part))
    conversations = [
        [{"role": "user", "content": f"What is {a} + {b}?"}, {"role": "assistant", "content": f"\\boxed{{{a + b}}}"}]
        for a, b in problems
    ]
    pq.write_table(pa.table({"messages": conversations}), root / "openhermes2_5.parquet")


def train_command(script: str, workdir: Path, *extra: str) -> tuple[list[str], dict[str, str]]:
    """``slime train`` with the script's CPU argument list (inputs under ``workdir/root``, output in
    ``workdir/out``), then ``extra`` flags, and its environment (no network)."""
    argv = prepare(script, workdir / "root")
    env = {**os.environ, "WANDB_MODE": "offline", "HF_HUB_OFFLINE": "1"}
    return [sys.executable, "-m", "slime.cli", "train", *argv, "--output-dir", str(workdir / "out"), *extra], env


def main() -> int:
    command, env = train_command(sys.argv[1], Path(sys.argv[2]), *sys.argv[3:])
    print(" ".join(command), flush=True)
    return subprocess.run(command, env=env).returncode


if __name__ == "__main__":
    sys.exit(main())
