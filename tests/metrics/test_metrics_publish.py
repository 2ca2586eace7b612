import logging

import numpy as np
import pytest
from samples import rollout_samples

from slime.hookspecs import hookimpl
from slime.metrics import finish_metrics, init_metrics, log, log_eval, log_perf, log_rollout, log_train_step
from slime.metrics.steps import rollout_step, step_key_of, train_step


def test_step_keys_of_namespaces():
    assert step_key_of("train/pg_loss") == "train/step"
    for name in ("rollout/raw_reward", "multi_turn/x/y", "passrate/pass@1", "perf/rollout_time"):
        assert step_key_of(name) == "rollout/step"
    assert step_key_of("eval/aime-pass@4") == "eval/step"
    assert step_key_of("other/x") is None


def test_steps(make_args):
    args = make_args()  # 2 prompts x 4 samples per rollout, 4 samples per optimizer step: 2 steps per rollout
    assert rollout_step(args, 3) == 3
    assert train_step(args, 3, 1) == 7
    args = make_args("--wandb-always-use-train-step")
    assert rollout_step(args, 3) == 6  # 3 * 2 * 4 // 4: the optimizer steps before rollout 3


def test_log_rollout_with_every_option(make_args, memory_sink, caplog):
    args = make_args(
        "--log-passrate", "--log-multi-turn", "--rollout-max-response-len", "10", "--rollout-num-gpus", "2"
    )
    init_metrics(args)
    with caplog.at_level(logging.INFO, logger="slime.metrics"):
        logged = log_rollout(args, 3, rollout_samples(), rollout_time=2.0, drop_reasons={"zero_std": 1})
    assert logged["rollout/step"] == 3
    assert logged["rollout/raw_reward"] == 0.75
    assert logged["rollout/dynamic_filter/drop_zero_std"] == 1
    assert logged["multi_turn/raw_response_length/response_length_clip_ratio"] == 0.5
    assert logged["passrate/pass@2"] == pytest.approx(11 / 12)
    assert logged["perf/tokens_per_gpu_per_sec"] == 15.0
    [sink] = memory_sink
    assert sink.calls == [(logged, "rollout/step")]
    [line] = [r.getMessage() for r in caplog.records if r.name == "slime.metrics"]
    assert line.startswith("rollout 3: {'rollout/response_len/mean': 7.25, ")
    assert "rollout/step" not in line  # slime prints the metrics before adding the step


def test_log_rollout_without_options(make_args, memory_sink):
    init_metrics(make_args())
    logged = log_rollout(make_args(), 0, rollout_samples())
    assert {key.split("/")[0] for key in logged} == {"rollout"}


def test_log_train_step(make_args, memory_sink, caplog):
    args = make_args()
    init_metrics(args)
    with caplog.at_level(logging.INFO, logger="slime.metrics"):
        logged = log_train_step(args, 3, 1, {"loss": 0.5, "train/grad_norm": np.float32(2.0), "lr-pg_0": 1e-6})
    assert logged == {"train/loss": 0.5, "train/grad_norm": 2.0, "train/lr-pg_0": 1e-6, "train/step": 7}
    assert type(logged["train/grad_norm"]) is float
    assert [r.getMessage() for r in caplog.records] == [
        "step 7: {'train/loss': 0.5, 'train/grad_norm': 2.0, 'train/lr-pg_0': 1e-06}"
    ]


def test_log_eval_uses_eval_step_and_each_datasets_n(make_args, memory_sink, caplog):
    args = make_args("--log-passrate", "--wandb-always-use-train-step")
    init_metrics(args)
    with caplog.at_level(logging.INFO, logger="slime.metrics"):
        logged = log_eval(args, 2, {"math": rollout_samples()}, n_samples_per_prompt={"math": 4})
    assert logged["eval/step"] == 4
    assert logged["eval/math"] == 0.75
    assert logged["eval/math-pass@4"] == 1.0
    assert caplog.records[0].getMessage().startswith("eval 2: {'eval/math': 0.75, ")


def test_log_eval_takes_the_eval_functions_results(make_args, memory_sink):
    from slime.eval.datasets import EvalResult

    args = make_args("--log-passrate")
    init_metrics(args)
    results = {"math": EvalResult("math", 4, rollout_samples()), "pairs": EvalResult("pairs", 2, rollout_samples())}
    logged = log_eval(args, 0, results)
    assert logged["eval/math-pass@4"] == 1.0
    assert "eval/pairs-pass@4" not in logged and logged["eval/pairs-pass@2"] == 1.0  # pairs (1,0) (1,0) (1,1) (1,1)


def test_log_perf(make_args, memory_sink):
    args = make_args()
    init_metrics(args)
    logged = log_perf(args, 1, {"train_wait": 1.0, "train": 3.0}, seq_lens=[10], num_gpus=1)
    assert logged == {
        "perf/train_wait_time": 1.0,
        "perf/train_time": 3.0,
        "perf/step_time": 4.0,
        "perf/wait_time_ratio": 0.25,
        "rollout/step": 1,
    }


def test_plugins_add_keys_through_the_event_hooks(make_args, memory_sink, plugin):
    class AddsKeys:
        @hookimpl
        def slime_on_rollout_end(self, args, rollout_id, samples, metrics):
            metrics["rollout/longest_response_chars"] = max(len(s.response) for s in samples)

        @hookimpl
        def slime_on_train_step_end(self, args, rollout_id, step_id, metrics):
            metrics["train/seen_step"] = step_id

        @hookimpl
        def slime_on_eval_end(self, args, rollout_id, results, metrics):
            metrics["eval/datasets"] = len(results)

    plugin(AddsKeys(), "test-adds-keys")
    args = make_args()
    init_metrics(args)
    assert log_rollout(args, 0, rollout_samples())["rollout/longest_response_chars"] == 12000
    assert log_train_step(args, 0, 1, {"loss": 1.0})["train/seen_step"] == 1
    assert log_eval(args, 0, {"a": rollout_samples(), "b": rollout_samples()})["eval/datasets"] == 2


def test_log_checks_step_key_and_values(make_args, memory_sink):
    init_metrics(make_args())
    with pytest.raises(ValueError, match="must contain it"):
        log(None, {"rollout/x": 1.0}, "rollout/step")
    with pytest.raises(ValueError, match="unknown step key 'step'"):
        log(None, {"step": 1}, "step")
    with pytest.raises(TypeError, match="metric 'rollout/x' is str 'high'; metrics must be numbers"):
        log(None, {"rollout/x": "high", "rollout/step": 0}, "rollout/step")
    assert log(None, {"rollout/x": np.int64(3), "rollout/ok": True, "rollout/step": 0}, "rollout/step") == {
        "rollout/x": 3,
        "rollout/ok": 1,
        "rollout/step": 0,
    }


def test_log_needs_init_and_finish_closes_sinks(make_args, memory_sink):
    with pytest.raises(RuntimeError, match="init_metrics"):
        log(None, {"rollout/step": 0}, "rollout/step")
    init_metrics(make_args())
    with pytest.raises(RuntimeError, match="already initialised"):
        init_metrics(make_args())
    finish_metrics()
    assert memory_sink[0].finished
