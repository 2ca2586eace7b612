import pytest

from slime.config.arguments import parse_args
from slime.errors import ConfigError

BASE = ["--rollout-batch-size", "4", "--n-samples-per-prompt", "2"]


def error_of(argv: list[str]) -> str:
    with pytest.raises(ConfigError) as err:
        parse_args(argv)
    return str(err.value)


def test_slime_defaults():
    args = parse_args(BASE)
    assert args.input_key == "input"
    assert args.label_key is None
    assert args.metadata_key == "metadata"
    assert args.tool_key == "tools"
    assert args.rollout_seed == 42
    assert args.seed == 1234
    assert args.advantage_estimator == "grpo"
    assert args.loss_type == "policy_loss"
    assert args.eps_clip == 0.2
    assert args.eps_clip_high == 0.2  # defaults to --eps-clip
    assert args.kl_loss_type == "k1"
    assert args.tis_clip == 2.0 and args.tis_clip_low == 0.0
    assert args.rollout_temperature == 1.0 and args.rollout_top_p == 1.0 and args.rollout_top_k == -1
    assert args.n_samples_per_eval_prompt == 1
    assert args.over_sampling_batch_size == 4
    assert args.global_batch_size == 8 and args.num_steps_per_rollout == 1
    assert args.use_wandb is False  # contributed by slime-metrics
    assert args.offload_train is False and args.offload_rollout is False
    assert args.get_mismatch_metrics is False and args.use_rollout_entropy is False
    assert args.use_opsm is False and args.opsm_delta == 1e-4
    assert (args.tis_mode, args.tis_level, args.tis_lower_bound, args.tis_upper_bound) == (
        "truncate",
        "token",
        None,
        2.0,
    )
    assert (args.use_rs, args.rs_level, args.rs_lower_bound, args.rs_upper_bound) == (False, "token", None, None)
    assert args.rs_veto_threshold is None and args.tis_batch_normalize is False
    assert args.use_opd is False and args.opd_type is None and args.opd_kl_coef == 1.0
    assert args.opd_teacher_load is None and args.opd_teacher_ckpt_step is None
    assert args.loss_mask_type == "qwen"
    assert (args.max_turns, args.tool_timeout, args.tool_concurrency) == (16, 30.0, 32)


def test_on_policy_distillation_flags():
    args = parse_args([*BASE, "--use-opd", "--opd-type", "megatron", "--opd-teacher-load", "/ckpt/teacher"])
    assert (args.use_opd, args.opd_type, args.opd_teacher_load) == (True, "megatron", "/ckpt/teacher")
    args = parse_args(
        [*BASE, "--use-opd", "--opd-type", "sglang", "--rm-url", "http://t/generate", "--opd-kl-coef", "0.5"]
    )
    assert args.opd_kl_coef == 0.5 and args.rm_url == "http://t/generate"
    assert parse_args([*BASE, "--opd-teacher-ckpt-step", "3"]).opd_teacher_ckpt_step == 3


def test_eps_clip_high_follows_eps_clip_unless_given():
    assert parse_args([*BASE, "--eps-clip", "0.1"]).eps_clip_high == 0.1
    assert parse_args([*BASE, "--eps-clip", "0.1", "--eps-clip-high", "0.28"]).eps_clip_high == 0.28


def test_num_steps_per_rollout_derives_global_batch_size():
    args = parse_args([*BASE, "--num-steps-per-rollout", "4"])
    assert args.global_batch_size == 2


def test_colocate_turns_on_offload_and_sizes_rollout():
    args = parse_args([*BASE, "--colocate", "--actor-num-gpus-per-node", "4"])
    assert args.offload_train and args.offload_rollout
    assert args.rollout_num_gpus == 4


def test_async_cannot_offload():
    # The colocated loop releases the engines after each generation; --async generates during training.
    with pytest.raises(ConfigError, match=r"^--async overlaps generation with training, so neither side can offload"):
        parse_args([*BASE, "--async", "--offload-rollout"])


def test_lone_eval_set_is_named_aime_as_in_slime():
    args = parse_args([*BASE, "--eval-prompt-data", "data/aime.jsonl", "--eval-interval", "5"])
    assert args.eval_prompt_data == ["aime", "data/aime.jsonl"]


@pytest.mark.parametrize(
    "argv,message",
    [
        (
            ["--kl-coef", "0.1", "--use-kl-loss"],
            "--kl-coef (KL in the reward) and --use-kl-loss (KL as a loss) cannot be used together; choose one",
        ),
        (["--kl-loss-coef", "0.1"], "--kl-loss-coef is set but --use-kl-loss is not"),
        (
            ["--global-batch-size", "3"],
            "--rollout-batch-size x --n-samples-per-prompt (8) is not divisible by --global-batch-size (3)",
        ),
        (
            ["--num-steps-per-rollout", "3"],
            "--rollout-batch-size x --n-samples-per-prompt (8) is not divisible by --num-steps-per-rollout (3)",
        ),
        (
            ["--num-steps-per-rollout", "2", "--global-batch-size", "2"],
            "--global-batch-size (2) contradicts --num-steps-per-rollout (2): 8 samples per rollout make 4 per step",
        ),
        (
            ["--global-batch-size", "4", "--micro-batch-size", "3"],
            "--global-batch-size (4) is not divisible by --micro-batch-size (3)",
        ),
        (["--over-sampling-batch-size", "2"], "--over-sampling-batch-size (2) must be >= --rollout-batch-size (4)"),
        (["--eps-clip-c", "0.5"], "--eps-clip-c must be > 1 (dual-clip bound), got 0.5"),
        (
            ["--use-tis", "--use-rollout-logprobs"],
            "--use-tis corrects toward the engine's log-probs, so it cannot be used with --use-rollout-logprobs",
        ),
        (
            ["--advantage-estimator", "reinforce_plus_plus"],
            "--advantage-estimator reinforce_plus_plus needs --normalize-advantages",
        ),
        (["--tis-clip-low", "3"], "--tis-clip-low (3.0) must be <= --tis-clip (2.0)"),
        (["--tis-upper-bound", "0"], "--tis-upper-bound must be > 0, got 0.0"),
        (["--tis-lower-bound", "2"], "--tis-lower-bound (2.0) must be < --tis-upper-bound (2.0)"),
        (
            ["--rs-lower-bound", "1.5", "--rs-upper-bound", "1"],
            "--rs-lower-bound (1.5) must be < --rs-upper-bound (1.0)",
        ),
        (["--rs-veto-threshold", "0"], "--rs-veto-threshold must be > 0, got 0.0"),
        (
            ["--tis-mode", "drop"],
            "argument --tis-mode: invalid choice: 'drop' (choose from 'truncate', 'clip', 'mask')",
        ),
        (
            ["--use-opd"],
            "--use-opd needs --opd-type: sglang (a teacher server at --rm-url) or megatron (--opd-teacher-load)",
        ),
        (
            ["--use-opd", "--opd-type", "megatron"],
            "--use-opd --opd-type megatron needs --opd-teacher-load (the teacher's checkpoint)",
        ),
        (
            ["--use-opd", "--opd-type", "sglang"],
            "--use-opd --opd-type sglang needs --rm-url (the teacher's SGLang /generate endpoint)",
        ),
        (
            ["--use-opd", "--opd-type", "sglang", "--rm-url", "http://t", "--opd-teacher-load", "/t"],
            "--opd-teacher-load is for --opd-type megatron; with sglang the teacher is the server at --rm-url",
        ),
        (["--opd-teacher-load", "/t"], "--opd-teacher-load is set but --use-opd is not"),
        (["--rollout-temperature", "0"], "--rollout-temperature must be > 0, got 0.0"),
        (["--eval-interval", "5"], "--eval-interval needs --eval-prompt-data or --eval-config"),
        (["--eval-prompt-data", "a", "a.jsonl", "b"], "--eval-prompt-data takes pairs 'name path', got 3 values"),
        (["--save-interval", "2"], "--save-interval needs --save (where to write checkpoints)"),
        (["--use-dynamic-batch-size"], "--use-dynamic-batch-size needs --max-tokens-per-gpu"),
        (["--mask-offpolicy-in-partial-rollout"], "--mask-offpolicy-in-partial-rollout needs --partial-rollout"),
        (
            ["--debug-rollout-only", "--debug-train-only"],
            "--debug-rollout-only and --debug-train-only cannot be used together",
        ),
        (
            ["--debug-rollout-only", "--load-debug-rollout-data", "dump_{rollout_id}.json"],
            "--debug-rollout-only and --load-debug-rollout-data cannot be used together",
        ),
        (
            ["--debug-train-only", "--eval-interval", "2", "--eval-prompt-data", "a", "a.jsonl"],
            "--eval-interval needs rollout engines, which --debug-train-only does not start; drop one of them",
        ),
        (
            [
                "--load-debug-rollout-data",
                "dump_{rollout_id}.json",
                "--eval-interval",
                "2",
                "--eval-prompt-data",
                "a",
                "a.jsonl",
            ],
            "--eval-interval needs rollout engines, which --debug-train-only does not start; drop one of them",
        ),
        (["--n-samples-per-prompt", "0"], "--n-samples-per-prompt must be >= 1, got 0"),
        (["--max-turns", "0"], "--max-turns must be >= 1, got 0"),
        (["--tool-concurrency", "0"], "--tool-concurrency must be >= 1, got 0"),
        (["--tool-timeout", "0"], "--tool-timeout must be > 0 seconds, got 0.0"),
        (
            ["--loss-mask-type", "llama"],
            "argument --loss-mask-type: invalid choice: 'llama' (choose from 'qwen', 'qwen3', 'qwen3_5', "
            "'distill_qwen')",
        ),
        (
            ["--kl-loss-type", "k4"],
            "argument --kl-loss-type: invalid choice: 'k4' (choose from 'k1', 'k2', 'k3', 'low_var_kl')",
        ),
        (["--rollout-batch-size", "many"], "argument --rollout-batch-size: invalid int value: 'many'"),
        (
            ["--apply-chat-template-kwargs", "{nope"],
            "argument --apply-chat-template-kwargs: invalid JSON (Expecting property name enclosed in double quotes)",
        ),
        (["--rollout-batch"], "unknown flag --rollout-batch; did you mean --rollout-batch-size?"),
        (["--not-a-slime-flag", "1"], "unknown flag --not-a-slime-flag"),
    ],
)
def test_cross_flag_rules_name_the_flags(argv, message):
    assert error_of([*BASE, *argv]) == message


def test_loading_rollout_dumps_means_train_only():
    assert parse_args([*BASE, "--load-debug-rollout-data", "dump_{rollout_id}.json"]).debug_train_only is True
    assert parse_args(BASE).debug_train_only is False


def test_yaml_config_sets_flags_and_the_command_line_wins(tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text(
        "rollout-batch-size: 8\n"
        "n_samples_per_prompt: 4\n"  # underscores work too
        "rollout_temperature: 0.7\n"
        "use-kl-loss: true\n"
        "kl-loss-coef: 0.01\n"
        "rollout-stop: ['</s>', \"\\n\\n\"]\n"
        "apply-chat-template-kwargs: {enable_thinking: false}\n"
        "eval-prompt-data: [aime, aime.jsonl, gsm8k, gsm8k.parquet]\n"
        "eval-interval: 5\n"
    )
    args = parse_args(["--config", str(config), "--rollout-temperature", "0.9", "--n-samples-per-prompt", "2"])
    assert args.rollout_batch_size == 8
    assert args.n_samples_per_prompt == 2  # command line wins
    assert args.rollout_temperature == 0.9  # command line wins
    assert args.use_kl_loss is True and args.kl_loss_coef == 0.01
    assert args.rollout_stop == ["</s>", "\n\n"]
    assert args.apply_chat_template_kwargs == {"enable_thinking": False}
    assert args.eval_prompt_data == ["aime", "aime.jsonl", "gsm8k", "gsm8k.parquet"]
    assert args.global_batch_size == 16  # derived after the command line is applied


@pytest.mark.parametrize(
    "text,message",
    [
        (
            "rollout-batchsize: 8\n",
            "{path}: unknown key 'rollout-batchsize' (no flag --rollout-batchsize); did you mean --rollout-batch-size?",
        ),
        ("rollout-batch-size: eight\n", "{path}: argument --rollout-batch-size: invalid int value: 'eight'"),
        ("colocate: 1\n", "{path}: key 'colocate' must be true or false, got 1"),
        ("rollout-batch-size: [1, 2]\n", "{path}: key 'rollout-batch-size' takes one value, got a list"),
        ("- a\n- b\n", "{path}: expected a mapping of flag names to values, got list"),
        ("a: b: c\n", "{path} line 1: invalid YAML (mapping values are not allowed here)"),
    ],
)
def test_config_file_errors_name_the_file(tmp_path, text, message):
    config = tmp_path / "bad.yaml"
    config.write_text(text)
    assert error_of(["--config", str(config)]) == message.format(path=config)


def test_missing_config_file():
    assert error_of(["--config", "/nonexistent/run.yaml"]) == "--config /nonexistent/run.yaml: file not found"


def test_empty_config_file_changes_nothing(tmp_path):
    config = tmp_path / "empty.yaml"
    config.write_text("")
    assert parse_args(["--config", str(config), *BASE]).rollout_batch_size == 4


def test_slime_flags_of_launch_scripts():
    args = parse_args(BASE)
    assert (args.balance_data, args.log_probs_chunk_size, args.data_pad_size_multiplier) == (False, -1, 128)
    assert args.compute_advantages_and_returns is True and args.custom_config_path is None
    args = parse_args(
        [*BASE, "--balance-data", "--log-probs-chunk-size", "512", "--disable-compute-advantages-and-returns"]
    )
    assert (args.balance_data, args.log_probs_chunk_size, args.compute_advantages_and_returns) == (True, 512, False)
    assert error_of([*BASE, "--log-probs-chunk-size", "0"]).startswith("--log-probs-chunk-size must be a positive")


def test_no_offload_keeps_a_colocated_side_resident(tmp_path):
    args = parse_args([*BASE, "--colocate", "--no-offload-train"])
    assert (args.offload_train, args.offload_rollout) == (False, True)
    config = tmp_path / "run.yaml"
    config.write_text("colocate: true\noffload-rollout: false\n")
    args = parse_args(["--config", str(config), *BASE])
    assert (args.offload_train, args.offload_rollout) == (True, False)


def test_custom_config_sets_attributes_for_custom_functions(tmp_path):
    config = tmp_path / "custom.yaml"
    config.write_text("judge_model: qwen-72b\nrollout_temperature: 0.5\nretries: [1, 2]\n")
    args = parse_args([*BASE, "--custom-config-path", str(config)])
    assert (args.judge_model, args.rollout_temperature, args.retries) == ("qwen-72b", 0.5, [1, 2])
    config.write_text("- a\n")
    assert error_of([*BASE, "--custom-config-path", str(config)]) == (
        f"--custom-config-path {config}: expected a mapping, got list"
    )
    assert error_of([*BASE, "--custom-config-path", "/nonexistent.yaml"]) == (
        "--custom-config-path /nonexistent.yaml: file not found"
    )


def test_reference_update_and_old_actor_flags():
    args = parse_args([*BASE, "--use-kl-loss", "--ref-update-interval", "5", "--keep-old-actor"])
    assert (args.ref_update_interval, args.keep_old_actor) == (5, True)
    assert parse_args(BASE).ref_update_interval is None and parse_args(BASE).keep_old_actor is False
    assert error_of([*BASE, "--ref-update-interval", "2"]) == (
        "--ref-update-interval updates the reference model, which only --use-kl-loss or --kl-coef uses"
    )
    assert (
        error_of([*BASE, "--use-kl-loss", "--ref-update-interval", "0"]) == "--ref-update-interval must be >= 1, got 0"
    )
    assert "--use-rollout-logprobs" in error_of([*BASE, "--keep-old-actor", "--use-rollout-logprobs"])


def test_critic_only_steps_are_for_ppo():
    assert (
        parse_args([*BASE, "--advantage-estimator", "ppo", "--num-critic-only-steps", "2"]).num_critic_only_steps == 2
    )
    assert error_of([*BASE, "--num-critic-only-steps", "2"]) == (
        "--num-critic-only-steps trains PPO's critic alone first; it needs --advantage-estimator ppo"
    )
    assert error_of([*BASE, "--advantage-estimator", "ppo", "--num-critic-only-steps", "-1"]) == (
        "--num-critic-only-steps must be >= 0, got -1"
    )
