"""--sglang-* pass-through: every SGLang server option except those slime manages, forwarded verbatim."""

import json

import pytest

from slime.config.arguments import parse_args
from slime.errors import ConfigError
from slime_sglang.arguments import MANAGED_DESTS, generate_option_table, load_option_table


def test_options_reach_the_server_verbatim_and_are_typed_on_args() -> None:
    args = parse_args(
        [
            "--sglang-mem-fraction-static",
            "0.5",
            "--sglang-enable-metrics",
            "--sglang-no-enable-tf32-matmul",
            "--sglang-json-model-override-args",
            '{"rope_scaling": null}',
            "--sglang-server-concurrency",
            "8",
        ]
    )
    assert args.sglang_server_args == [
        "--mem-fraction-static",
        "0.5",
        "--enable-metrics",
        "--no-enable-tf32-matmul",
        "--json-model-override-args",
        '{"rope_scaling": null}',
    ]
    assert args.sglang_mem_fraction_static == 0.5
    assert args.sglang_enable_metrics is True and args.sglang_enable_tf32_matmul is False
    assert args.sglang_server_concurrency == 8
    assert parse_args([]).sglang_server_args == []


def test_yaml_config_feeds_the_same_flags(tmp_path) -> None:
    config = tmp_path / "run.yaml"
    config.write_text("sglang_enable_metrics: true\nsglang_max_running_requests: 4\n")
    args = parse_args(["--config", str(config)])
    assert args.sglang_server_args == ["--enable-metrics", "--max-running-requests", "4"]


def test_sglang_config_is_not_forwarded_as_sglangs_own_config() -> None:
    with pytest.raises(ConfigError):
        parse_args(["--sglang-config", "groups.yaml"])
    assert "--config" not in {option for entry in load_option_table() for option in entry["options"]}


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--sglang-mem-fraction-static", "lots"], "--sglang-mem-fraction-static: expected float, got 'lots'"),
        (["--sglang-attention-backend", "magic"], "--sglang-attention-backend: invalid choice 'magic'"),
        (["--sglang-port", "3000"], "unknown flag --sglang-port"),  # managed by slime
        (["--sglang-server-concurrency", "0"], "--sglang-server-concurrency must be >= 1, got 0"),
        (["--rollout-external-engine-addrs", "nohost"], "--rollout-external-engine-addrs: expected host:port"),
        (
            ["--rollout-num-gpus", "8", "--rollout-num-gpus-per-engine", "8", "--num-gpus-per-node", "4"],
            "--rollout-num-gpus-per-engine 8 is more than --num-gpus-per-node 4: an engine spanning several nodes",
        ),
        # slime's meaning (engine groups), not SGLang's --config, and not built yet: refused, never forwarded
        (["--sglang-config", "groups.yaml"], "--sglang-config groups.yaml: slime's engine-group YAML"),
    ],
)
def test_bad_flags_fail_before_any_server_starts(argv: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_args(argv)


def test_a_qwen3_moe_sglang_would_serve_as_another_model_is_refused(tmp_path) -> None:
    config = {"model_type": "qwen3_moe", "num_experts": 4, "mlp_only_layers": [1], "tie_word_embeddings": False}
    (tmp_path / "config.json").write_text(json.dumps(config))
    argv = ["--hf-checkpoint", str(tmp_path), "--train-backend", "slime_testkit.hf_trainer.HFTrainer"]
    with pytest.raises(ConfigError) as error:
        parse_args(argv)
    assert str(error.value) == (
        f"--hf-checkpoint {tmp_path}: SGLang serves qwen3_moe only with mlp_only_layers [], decoder_sparse_step 1, "
        "tie_word_embeddings False; config.json has mlp_only_layers [1]"
    )
    (tmp_path / "config.json").write_text(json.dumps({**config, "mlp_only_layers": []}))
    parse_args(argv)  # as Qwen's MoE checkpoints are
    (tmp_path / "config.json").write_text(json.dumps({**config, "decoder_sparse_step": 2, "mlp_only_layers": None}))
    with pytest.raises(ConfigError, match=r"config.json has decoder_sparse_step 2$"):
        parse_args(argv)


@pytest.mark.slow
def test_option_table_matches_the_installed_sglang() -> None:
    # Imports SGLang (seconds of CPU); if this fails, regenerate with `python -m slime_sglang.arguments`.
    table = load_option_table()
    assert table == generate_option_table()
    dests = {entry["dest"] for entry in table}
    assert len(table) > 400 and not dests & MANAGED_DESTS
