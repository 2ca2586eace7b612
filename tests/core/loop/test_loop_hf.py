"""The loop on real Ray, with core's small HF train backend and HF engine (not Megatron or SGLang)."""

import json

import pytest

from slime.config.arguments import parse_args
from slime.loop import train
from slime.types import Sample


async def label_in_response(args, sample) -> float:
    return float(sample.label in sample.response)


async def only_the_first_sample_scores(args, sample) -> float:
    """A reward whose mean is known in advance: 1 for sample index 0 (the first copy of the first prompt), else 0."""
    return float(sample.index == 0)


def loop_args(root, model, data, *extra):
    return parse_args(
        [
            "--train-backend", "slime_testkit.hf_trainer.HFTrainer",
            "--rollout-backend", "slime_testkit.hf_engine.HFEngine",
            "--actor-num-gpus-per-node", "1", "--rollout-num-gpus", "1",
            "--hf-checkpoint", str(model), "--prompt-data", str(data), "--input-key", "prompt", "--label-key", "label",
            "--rollout-batch-size", "2", "--n-samples-per-prompt", "2", "--rollout-max-response-len", "4",
            "--custom-rm-path", f"{__name__}.label_in_response",
            "--update-weight-transport", "disk", "--output-dir", str(root / "out"), *extra,
        ]
    )  # fmt: skip


def events(output_dir):
    """What the loop logged, in order: ("eval", 0), ("rollout", 0), ("train", 0), ("perf", 0), ..."""
    found = []
    for line in (output_dir / "metrics.jsonl").read_text().splitlines():
        record = json.loads(line)
        if "eval/step" in record:
            found.append(("eval", record["eval/step"]))
        elif "train/step" in record:
            found.append(("train", record["train/step"]))
        elif any(key.startswith("rollout/") and key != "rollout/step" for key in record):
            found.append(("rollout", record["rollout/step"]))
        else:
            found.append(("perf", record["rollout/step"]))
    return found


def test_loop_order_save_and_eval_rules(ray_runtime, setup):
    root, model, data = setup
    args = loop_args(
        root, model, data, "--num-rollout", "3", "--save", str(root / "ckpt"), "--save-interval", "2",
        "--eval-interval", "2", "--eval-prompt-data", "heldout", str(data),
        "--save-debug-rollout-data", str(root / "dumps" / "rollout_{rollout_id}.json"),
    )  # fmt: skip
    train(args)
    assert events(root / "out") == [
        ("eval", 0), ("rollout", 0), ("train", 0), ("perf", 0),
        ("rollout", 1), ("train", 1), ("perf", 1), ("eval", 1),
        ("rollout", 2), ("train", 2), ("perf", 2),
    ]  # fmt: skip
    assert (root / "ckpt" / "latest_checkpointed_iteration.txt").read_text() == "2"  # interval 2 -> 1, last -> 2
    assert sorted(p.name for p in (root / "ckpt").iterdir() if p.name.startswith("iter_")) == [
        "iter_0000001",
        "iter_0000002",
    ]
    assert (root / "ckpt" / "rollout" / "data_source_2.json").exists()
    dump = json.loads((root / "dumps" / "rollout_1.json").read_text())
    assert dump["rollout_id"] == 1 and [s["index"] for s in dump["samples"]] == [4, 5, 6, 7]  # 2 prompts x 2
    assert sorted(p.name for p in (root / "dumps").iterdir()) == [f"rollout_{i}.json" for i in range(3)]
    # Four updates (the first before rollout 0); each removes the one before once the engines have loaded it.
    assert [p.name for p in (root / "out" / "weights").iterdir()] == ["weight_v3"]


def test_resume_continues_with_the_next_prompts(ray_runtime, setup, tmp_path):
    root, model, data = setup
    common = ("--rollout-shuffle", "--save", str(tmp_path / "ckpt"), "--save-interval", "1")
    common += ("--output-dir", str(tmp_path / "out"))
    train(loop_args(root, model, data, "--num-rollout", "3", *common))
    state = json.loads((tmp_path / "ckpt" / "rollout" / "data_source_2.json").read_text())
    assert state["sample_offset"] == 6 and state["epoch_id"] == 0  # 3 rollouts x 2 prompts
    args = loop_args(root, model, data, "--num-rollout", "4", *common, "--load", str(tmp_path / "ckpt"))
    train(args)
    assert [e for e in events(tmp_path / "out") if e[0] == "rollout"] == [("rollout", r) for r in (0, 1, 2, 3)]
    state = json.loads((tmp_path / "ckpt" / "rollout" / "data_source_3.json").read_text())
    assert state["sample_offset"] == 8


def test_slime_eval_command_scores_the_eval_sets(setup, tmp_path):
    import subprocess
    import sys

    root, model, data = setup
    out = tmp_path / "eval-out"
    result = subprocess.run(
        [
            sys.executable, "-m", "slime.cli", "eval",
            "--rollout-backend", "slime_testkit.hf_engine.HFEngine", "--actor-num-gpus-per-node", "1",
            "--rollout-num-gpus", "1", "--hf-checkpoint", str(model), "--input-key", "prompt", "--label-key", "label",
            "--eval-prompt-data", "small", str(data), "--n-samples-per-eval-prompt", "2",
            "--rollout-max-response-len", "3", "--custom-rm-path", f"{__name__}.only_the_first_sample_scores",
            "--output-dir", str(out),
        ],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(records) == 1 and records[0]["eval/step"] == 0
    # 8 prompts x 2 samples, of which exactly one (index 0) scores 1: the mean reward over every sample is 1/16
    # (1/8 if one sample per prompt were scored, 1 if summed).
    assert records[0]["eval/small"] == 1 / 16
    assert "eval 0: {" in result.stderr  # slime's console line


def test_async_mode_overlaps_and_resumes_with_the_same_prompts(ray_runtime, setup, tmp_path):
    root, model, data = setup
    common = ("--rollout-shuffle", "--save", str(tmp_path / "ckpt"), "--save-interval", "1")
    train(loop_args(root, model, data, "--num-rollout", "3", "--async", *common, "--output-dir", str(tmp_path / "a")))
    # The next rollout had started before rollout 1 was saved; the checkpoint still records the position after 1.
    state = json.loads((tmp_path / "ckpt" / "rollout" / "data_source_1.json").read_text())
    assert state["sample_offset"] == 4
    records = [json.loads(line) for line in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    assert [r["rollout/step"] for r in records if "rollout/raw_reward" in r] == [0, 1, 2]


def test_staleness_guard():
    from slime.loop import check_staleness
    from slime.rollout.train_batch import newest_weight_version

    args = parse_args(["--rollout-batch-size", "1", "--actor-num-gpus-per-node", "1", "--async"])
    versions = [newest_weight_version(Sample(weight_versions=v)) for v in (["4"], ["3", "5"], [], ["default"])]
    assert versions == ["4", "5", "", ""]  # a partial rollout's newest version counts; unknown is ""
    # ("default": SGLang's tag for --hf-checkpoint's weights, which the trainer never sent)
    check_staleness(args, 5, versions)
    with pytest.raises(RuntimeError, match="rollout 5 was generated with weights of version 3: 2 versions stale"):
        check_staleness(args, 5, ["3"])


def test_rollout_only_then_train_only_on_its_dumps(ray_runtime, setup, tmp_path):
    """slime's debug pair: generate without a trainer and dump the rollouts, then train on the dumps without engines."""
    root, model, data = setup
    dumps = str(tmp_path / "dumps" / "rollout_{rollout_id}.json")
    generate_only = ("--num-rollout", "2", "--save", str(tmp_path / "ckpt"), "--save-interval", "1")
    generate_only += ("--eval-interval", "1", "--eval-prompt-data", "heldout", str(data))
    first = tmp_path / "first"
    generate_only += ("--save-debug-rollout-data", dumps, "--output-dir", str(first))
    train(loop_args(root, model, data, "--debug-rollout-only", *generate_only))
    # Rollouts and evals, no train step; nothing saved and no weights pushed (there is no trainer).
    assert events(first) == [
        ("eval", 0),
        ("rollout", 0),
        ("perf", 0),
        ("eval", 0),
        ("rollout", 1),
        ("perf", 1),
        ("eval", 1),
    ]
    assert not (tmp_path / "ckpt").exists() and not (first / "weights").exists()
    assert sorted(p.name for p in (tmp_path / "dumps").iterdir()) == ["rollout_0.json", "rollout_1.json"]

    replay = ("--num-rollout", "2", "--save", str(tmp_path / "ckpt"), "--save-interval", "1")
    replay += ("--output-dir", str(tmp_path / "second"))
    train(loop_args(root, model, data, "--load-debug-rollout-data", dumps, *replay))
    second = tmp_path / "second"
    assert events(second) == [("rollout", 0), ("train", 0), ("perf", 0), ("rollout", 1), ("train", 1), ("perf", 1)]
    assert not (second / "weights").exists()  # no engine to push weights to (the disk transport would write here)
    assert (tmp_path / "ckpt" / "latest_checkpointed_iteration.txt").read_text() == "1"

    def rollout_records(output_dir):
        records = [json.loads(line) for line in (output_dir / "metrics.jsonl").read_text().splitlines()]
        return [r for r in records if "rollout/raw_reward" in r]

    # The replay trained on exactly the dumped samples: the same rewards and response lengths, rollout by rollout.
    for key in ("rollout/raw_reward", "rollout/response_len/mean"):
        assert [r[key] for r in rollout_records(second)] == [r[key] for r in rollout_records(first)]


def test_train_only_runs_rollout_functions_that_do_not_generate(ray_runtime, setup, tmp_path):
    from slime.errors import SlimeError

    root, model, data = setup
    sft = ("--rollout-function-path", "sft", "--loss-type", "sft_loss", "--n-samples-per-prompt", "1")
    train(loop_args(root, model, data, "--debug-train-only", "--num-rollout", "2", *sft, "--output-dir", str(tmp_path)))
    assert events(tmp_path) == [("rollout", 0), ("train", 0), ("perf", 0), ("rollout", 1), ("train", 1), ("perf", 1)]

    args = loop_args(root, model, data, "--debug-train-only", "--num-rollout", "1", "--output-dir", str(tmp_path / "b"))
    with pytest.raises(SlimeError, match="--debug-train-only starts no rollout engine, but --rollout-function-path"):
        train(args)


def test_colocate_gives_each_phase_the_memory_of_the_side_that_waits(ray_runtime, setup, tmp_path):
    from slime_testkit.call_log import read_calls

    root, model, data = setup
    out = tmp_path / "out"
    args = loop_args(
        root, model, data, "--colocate", "--num-rollout", "2", "--update-weights-interval", "2",
        "--output-dir", str(out),
    )  # fmt: skip
    train(args)
    update = ["resume_memory weights", "update_weights", "resume_memory kv_cache"]  # weights before the KV cache
    rollout = ["generate", "release_memory", "onload", "train", "offload"]
    assert read_calls(out) == [
        "offload", "release_memory", *update,  # after start-up: the first weights reach released engines
        *rollout, "resume_memory all",  # rollout 0: no update (interval 2), the engines resume for the next one
        *rollout, *update,
    ]  # fmt: skip


def test_mismatch_metrics_and_importance_weights_in_the_loop(ray_runtime, setup, tmp_path):
    """--get-mismatch-metrics with MIS: about 0 when the engine and the trainer agree (same weights), larger when the
    engine's log-probs are perturbed (a replay of the dumped rollout with its log-probs shifted)."""
    root, model, data = setup
    dumps = tmp_path / "dumps"
    mismatch = ("--get-mismatch-metrics", "--use-tis", "--custom-tis-function-path", "mis", "--use-rs")
    mismatch += ("--num-rollout", "1", "--save-debug-rollout-data", str(dumps / "rollout_{rollout_id}.json"))
    train(loop_args(root, model, data, *mismatch, "--output-dir", str(tmp_path / "agree")))

    def train_record(output_dir):
        records = [json.loads(line) for line in (output_dir / "metrics.jsonl").read_text().splitlines()]
        return next(r for r in records if "train/step" in r)

    agree = train_record(tmp_path / "agree")
    for name in ("mis_k3_kl", "mis_kl", "mis_log_ppl_abs_diff", "mis_chi2_token", "train_rollout_logprob_abs_diff"):
        assert abs(agree[f"train/{name}"]) < 1e-4, (name, agree[f"train/{name}"])
    assert agree["train/mis_rs_mask_fraction_high"] == 0.0 and agree["train/ois"] == pytest.approx(1.0, abs=1e-4)

    dump = json.loads((dumps / "rollout_0.json").read_text())
    for index, sample in enumerate(dump["samples"]):
        shift = 0.5 if index % 2 else -0.5
        sample["rollout_log_probs"] = [lp + shift * (-1) ** t for t, lp in enumerate(sample["rollout_log_probs"])]
    (dumps / "rollout_0.json").write_text(json.dumps(dump))
    replay = ("--load-debug-rollout-data", str(dumps / "rollout_{rollout_id}.json"), "--num-rollout", "1")
    train(loop_args(root, model, data, *mismatch[:5], *replay, "--output-dir", str(tmp_path / "perturbed")))
    perturbed = train_record(tmp_path / "perturbed")
    assert perturbed["train/train_rollout_logprob_abs_diff"] == pytest.approx(0.5, abs=1e-3)
    assert perturbed["train/mis_k3_kl"] > 0.1 and perturbed["train/mis_chi2_token"] > 0.1
    # The weights follow the shifted ratios e^(+-0.5) = 1.65, 0.61: inside [1/2, 2], so neither truncated nor rejected.
    assert perturbed["train/mis_is_ratio_max_final"] > 1.5 and perturbed["train/mis_is_ratio_min_final"] < 0.7
    assert perturbed["train/mis_rs_mask_fraction_high"] == 0.0 and perturbed["train/mis_tis_truncate_fraction"] == 0.0


@pytest.mark.parametrize("mode", [(), ("--async",)], ids=["sync", "async"])
def test_fully_async_rollout_trains_on_data_within_its_staleness_bound(ray_runtime, setup, tmp_path, mode):
    root, model, data = setup
    out = tmp_path / "out"
    extra = ("--num-rollout", "4", "--rollout-function-path", "fully_async", *mode, "--output-dir", str(out))
    train(loop_args(root, model, data, *extra))
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    rollouts = [r for r in records if "rollout/fully_async/staleness_max" in r]
    assert [r["rollout/step"] for r in rollouts] == [0, 1, 2, 3]
    bound = 1 + len(mode)  # one more than the loop's order gives
    assert all(r["rollout/fully_async/staleness_max"] <= bound for r in rollouts)
    assert max(r["rollout/fully_async/staleness_max"] for r in rollouts[1:]) >= 1  # carried across an update
    assert all(r["rollout/fully_async/in_flight"] == 2 for r in rollouts)  # a rollout ahead, always
    assert len([r for r in records if "train/step" in r]) >= 4
