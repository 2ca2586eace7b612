"""Megatron-LM's own flags: slime's launch scripts parse unchanged, with slime's defaults; the model shape they give
is checked against --hf-checkpoint; GPU-only features are one line on CPU; the option table matches megatron-core."""

import json
import subprocess
import sys
from pathlib import Path

import megatron_helpers
import pytest
from launch_scripts import MODELS, MOE_SCRIPTS, SCRIPTS, argv
from megatron_helpers import make_args, make_batch, make_trainer, train_rollouts

from slime.config.arguments import parse_args
from slime.errors import ConfigError
from slime_megatron import megatron_flags
from slime_megatron.device_features import GPU_ONLY, refuse_gpu_only_features, refuse_missing_gpu_kernels
from slime_megatron.hf_config import HFModelConfig

# run-glm4-9B.sh's --context-parallel-size 2 is refused (the local attention has none): test_megatron_glm4.py.
DENSE = [name for name in SCRIPTS if name not in (*MOE_SCRIPTS, "run-glm4-9B.sh")]


@pytest.mark.parametrize("script", DENSE)
def test_dense_launch_scripts_parse_unchanged(script):
    args = parse_args(argv(script))
    assert args.swiglu and args.normalization == "RMSNorm" and args.recompute_granularity == "full"
    assert args.accumulate_allreduce_grads_in_fp32 and args.attention_softmax_in_fp32
    assert args.optimizer == "adam" and args.attention_backend == "flash" and args.hidden_dropout == 0.0


@pytest.mark.parametrize("model", list(MODELS))
def test_model_presets_parse(model):
    parse_args(MODELS[model].split())


def test_moe_script_parses_and_its_shape_is_checked_against_the_checkpoint(tiny_moe_model):
    args = parse_args(argv("run-qwen3-30B-A3B.sh"))
    assert (args.num_experts, args.moe_router_topk, args.expert_model_parallel_size) == (128, 8, 8)
    script = argv("run-qwen3-30B-A3B.sh")
    script[script.index("--hf-checkpoint") + 1] = str(tiny_moe_model)
    with pytest.raises(ConfigError, match=r"^--num-layers \(48\) disagrees with .*: num_hidden_layers is 3$"):
        parse_args(script)


def test_slime_overrides_megatron_defaults():
    args = parse_args([])
    assert (args.lr, args.seed, args.clip_grad) == (1e-6, 1234, 1.0)
    assert (args.micro_batch_size, args.global_batch_size) == (1, None)
    assert (args.distributed_backend, args.distributed_timeout_minutes) == ("nccl", 10)
    assert (args.mtp_num_layers, args.mtp_loss_scaling_factor, args.padded_vocab_size) == (None, 0.2, None)
    assert (args.async_save, args.no_save_optim, args.record_memory_history) == (False, False, False)
    # Megatron's own defaults elsewhere, and options typed by Megatron's functions kept as text until a rank builds.
    assert (args.optimizer, args.adam_beta2, args.sgd_momentum, args.rotary_percent) == ("adam", 0.999, 0.9, 1.0)
    assert parse_args(["--moe-layer-freq", "[1,0]"]).moe_layer_freq == "[1,0]"


def test_unknown_and_bad_megatron_flags_are_one_line():
    with pytest.raises(ConfigError, match=r"^unknown flag --swiglue; did you mean --swiglu\?$"):
        parse_args(["--swiglu", "--swiglue"])
    with pytest.raises(ConfigError, match=r"^argument --recompute-granularity: invalid choice: 'most'"):
        parse_args(["--recompute-granularity", "most"])
    with pytest.raises(ConfigError, match=r"^--attention-backend: invalid choice 'flashy' \(choose from flash, "):
        parse_args(["--attention-backend", "flashy"])
    with pytest.raises(ConfigError, match=r"^--context-parallel-size 2: megatron-core's local attention"):
        parse_args(["--context-parallel-size", "2", "--actor-num-gpus-per-node", "2"])


def test_shape_flags_agree_with_config_json(tiny_models):
    hf_dir = tiny_models["qwen3"]
    preset = MODELS["qwen3-4B"].split()
    with pytest.raises(ConfigError) as error:
        parse_args(["--hf-checkpoint", str(hf_dir), *preset])
    assert str(error.value) == f"--num-layers (36) disagrees with {hf_dir / 'config.json'}: num_hidden_layers is 2"
    with pytest.raises(ConfigError, match=r"^--add-qkv-bias \(True\) disagrees with .*: attention_bias is False$"):
        parse_args(["--hf-checkpoint", str(hf_dir), "--hidden-size", "64", "--add-qkv-bias"])
    # Flags a script leaves out are config.json's.
    args = parse_args(["--hf-checkpoint", str(hf_dir), "--hidden-size", "64", "--swiglu", "--qk-layernorm"])
    config = json.loads((Path(hf_dir) / "config.json").read_text())
    assert (args.num_layers, args.num_query_groups, args.vocab_size) == (2, 2, config["vocab_size"])
    assert args.qk_layernorm and not args.add_qkv_bias and args.untie_embeddings_and_output_weights is False


@pytest.mark.parametrize("flag", [flag for flag, _, _ in GPU_ONLY])
def test_gpu_only_features_parse_and_are_refused_on_cpu(flag):
    values = {"--fp8-format": ["e4m3"], "--fp4-format": ["e2m1"], "--attention-backend": ["flash"]}
    args = parse_args([flag, *values.get(flag, [])])
    with pytest.raises(ConfigError, match=f"^{flag}.* needs a GPU \\(.*\\); this rank trains on CPU$"):
        refuse_gpu_only_features(args)


def test_a_gpu_rank_without_apex_refuses_gradient_accumulation_fusion_in_one_line():
    # Megatron's default is on; without Apex's kernel megatron-core raised a traceback while building the model (seen
    # on a GPU machine). This machine has no Apex either, so the check (a GPU rank's) can run here.
    with pytest.raises(
        ConfigError, match=r"^--gradient-accumulation-fusion .* pass --no-gradient-accumulation-fusion$"
    ):
        refuse_missing_gpu_kernels(parse_args([]))
    refuse_missing_gpu_kernels(parse_args(["--no-gradient-accumulation-fusion"]))


def test_training_rank_refuses_gpu_only_flag_and_unimportable_spec(world, tiny_models):
    hf_dir = tiny_models["qwen2"]
    with pytest.raises(ConfigError, match=r"^--attention-backend flash needs a GPU"):
        make_trainer(make_args(hf_dir, "--attention-backend", "flash"))
    with pytest.raises(ConfigError, match=r"^--spec no_such_module get_spec: cannot import it"):
        make_trainer(make_args(hf_dir, "--spec", "no_such_module", "get_spec"))


@pytest.mark.slow
def test_option_table_matches_installed_megatron():
    assert megatron_flags.generate_option_table() == megatron_flags.load_option_table(), (
        "megatron-core's arguments changed: run `python -m slime_megatron.megatron_flags` and review the diff"
    )


def _slime(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "slime.cli", *argv], capture_output=True, text=True, timeout=300)


def test_dry_run_prints_the_checked_configuration_without_starting(tiny_models, tmp_path):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(json.dumps({"prompt": [{"role": "user", "content": "1+1="}], "label": "2"}) + "\n")
    # run-qwen3-4B.sh with its paths, and its shape, pointed at a tiny Qwen3 (a dry run still reads config.json).
    hf = HFModelConfig.load(tiny_models["qwen3"])
    script = argv("run-qwen3-4B.sh")
    for flag, value in {
        "--hf-checkpoint": tiny_models["qwen3"], "--prompt-data": prompts, "--num-layers": hf.num_layers,
        "--hidden-size": hf.hidden_size, "--ffn-hidden-size": hf.intermediate_size,
        "--num-attention-heads": hf.num_heads, "--num-query-groups": hf.num_kv_heads, "--kv-channels": hf.head_dim,
        "--vocab-size": hf.vocab_size, "--rotary-base": int(hf.rope_theta), "--norm-epsilon": hf.rms_norm_eps,
        "--ref-load": tmp_path / "ref", "--load": tmp_path / "ckpt", "--save": tmp_path / "ckpt",
    }.items():  # fmt: skip
        script[script.index(flag) + 1] = str(value)
    start = script.index("--eval-interval")
    del script[start : script.index("--n-samples-per-eval-prompt")]  # no eval data here
    result = _slime("train", "--dry-run", *script, "--wandb-key", "secret-key", "--output-dir", str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[-1] == "dry run: flags and inputs checked; nothing started"
    for line in ("num_layers = 2", "sequence_parallel = true", "tensor_model_parallel_size = 2", 'optimizer = "adam"',
                 "balance_data = true", "qk_layernorm = true", "wandb_key = <redacted>"):  # fmt: skip
        assert line in lines, line
    assert "secret-key" not in result.stdout + result.stderr
    assert not (tmp_path / "out").exists()


def test_spec_and_dropout_flags_reach_the_model(world, tiny_models):
    hf_dir, batch = tiny_models["qwen3"], make_batch(600)
    plain = train_rollouts(make_trainer(make_args(hf_dir)), batch, range(1))
    custom = train_rollouts(
        make_trainer(make_args(hf_dir, "--spec", "megatron_helpers", "custom_layer_spec")), batch, range(1)
    )
    assert megatron_helpers.SPEC_CALLS == [2]  # called once, with Megatron's config
    for expected, got in zip(plain, custom, strict=True):  # the same layers (megatron's own attention, not SDPA)
        assert got["loss"] == pytest.approx(expected["loss"], abs=1e-5)
    dropout = train_rollouts(make_trainer(make_args(hf_dir, "--hidden-dropout", "0.5")), batch, range(1))
    assert abs(dropout[0]["entropy_loss"] - plain[0]["entropy_loss"]) > 1e-3
