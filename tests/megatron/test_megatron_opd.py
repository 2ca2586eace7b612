"""On-policy distillation on the megatron backend (one process): a teacher checkpoint (``--opd-type megatron``) or an
SGLang teacher's log-probs carried by the batch (``--opd-type sglang``) give each token's reverse KL, which moves the
advantages and is logged as ``rollout/opd_reverse_kl`` (per rollout) and ``train/opd_reverse_kl`` (per step)."""

import shutil

import numpy as np
import pytest
import torch
from megatron_helpers import make_args, make_batch, make_trainer
from safetensors.torch import load_file, save_file

from slime.types import RaggedArray
from slime_megatron.convert import hf_to_megatron

PLAIN = ("--advantage-estimator", "grpo")  # each token's advantage is its sample's reward: OPD's term shows in them


def _teacher_checkpoint(student_hf, root):
    """A megatron checkpoint of the student's architecture with other weights (the student's, moved by noise)."""
    hf = root / "teacher-hf"
    shutil.copytree(student_hf, hf)
    generator = torch.Generator().manual_seed(7)
    tensors = {
        name: t + 0.05 * torch.randn(t.shape, generator=generator)
        for name, t in load_file(hf / "model.safetensors").items()
    }
    save_file(tensors, hf / "model.safetensors", metadata={"format": "pt"})
    hf_to_megatron(hf, root / "teacher")
    return hf, root / "teacher"


def _sample_mean(per_sample: dict[int, torch.Tensor], batch) -> float:
    """slime's rollout/* mean: each sample's mean over its trained tokens, then over samples."""
    means = []
    for i, values in per_sample.items():
        mask = np.asarray(batch.loss_masks[i], dtype=np.float64)
        means.append(float((values.double().numpy() * mask).sum() / mask.sum()))
    return float(np.mean(means))


def test_a_megatron_teacher_moves_the_advantages_by_the_reverse_kl(world, tiny_models, tmp_path):
    student = tiny_models["qwen3"]
    teacher_hf, teacher_ckpt = _teacher_checkpoint(student, tmp_path)
    batch = make_batch(600)
    ids = list(range(len(batch)))
    baseline = make_trainer(make_args(student, *PLAIN))
    student_log_probs = baseline.compute_log_probs(batch, ids)
    teacher_log_probs = make_trainer(make_args(teacher_hf, *PLAIN)).compute_log_probs(batch, ids)
    plain_steps = baseline.train(0, batch)

    opd = make_trainer(make_args(student, *PLAIN, "--use-opd", "--opd-type", "megatron", "--opd-teacher-load", str(teacher_ckpt), "--opd-kl-coef", "0.5"))  # fmt: skip
    steps = opd.train(0, batch)
    means = opd.train_data_means
    reverse_kl = {i: student_log_probs[i] - teacher_log_probs[i] for i in ids}
    assert means["rollout/teacher_log_probs"] == pytest.approx(_sample_mean(teacher_log_probs, batch), abs=1e-5)
    assert means["rollout/opd_reverse_kl"] == pytest.approx(_sample_mean(reverse_kl, batch), abs=1e-5)
    assert abs(means["rollout/opd_reverse_kl"]) > 1e-2  # the teacher differs
    # GRPO without whitening: each token's advantage is its sample's reward, minus
    # 0.5 x the token's reverse KL with OPD.
    expected = {i: torch.full_like(reverse_kl[i], batch.rewards[i]) - 0.5 * reverse_kl[i] for i in ids}
    assert means["rollout/advantages"] == pytest.approx(_sample_mean(expected, batch), abs=1e-5)
    assert steps[0]["pg_loss"] != pytest.approx(plain_steps[0]["pg_loss"], rel=1e-3)
    # train/opd_reverse_kl: each step's own samples (make_args: 2 steps of 4), as slime reports it from the loss.
    for step, first in ((steps[0], 0), (steps[1], 4)):
        step_kl = {i: reverse_kl[i] for i in range(first, first + 4)}
        assert step["opd_reverse_kl"] == pytest.approx(_sample_mean(step_kl, batch), abs=1e-5)
    assert "opd_reverse_kl" not in plain_steps[0]
    assert opd.perf["perf/teacher_log_probs_time"] > 0


def test_a_teacher_equal_to_the_student_changes_nothing(world, tiny_models, tmp_path):
    student = tiny_models["qwen3"]
    hf_to_megatron(student, tmp_path / "teacher")
    batch = make_batch(600)
    plain = make_trainer(make_args(student, *PLAIN)).train(0, batch)
    opd = make_trainer(make_args(student, *PLAIN, "--use-opd", "--opd-type", "megatron", "--opd-teacher-load", str(tmp_path / "teacher")))  # fmt: skip
    steps = opd.train(0, batch)
    assert opd.train_data_means["rollout/opd_reverse_kl"] == pytest.approx(0.0, abs=1e-6)
    for got, expected in zip(steps, plain, strict=True):
        assert got["loss"] == pytest.approx(expected["loss"], rel=1e-5, abs=1e-7)


def test_an_sglang_teachers_log_probs_come_with_the_batch(world, tiny_models):
    student = tiny_models["qwen3"]
    batch = make_batch(600)
    ids = list(range(len(batch)))
    student_log_probs = make_trainer(make_args(student, *PLAIN)).compute_log_probs(batch, ids)
    teacher = {i: student_log_probs[i] - 0.25 for i in ids}  # a teacher 0.25 nats less sure of every token
    batch.teacher_log_probs = RaggedArray.from_lists([teacher[i].tolist() for i in ids], "f")
    args = make_args(student, *PLAIN, "--use-opd", "--opd-type", "sglang", "--rm-url", "http://127.0.0.1:1/generate")
    opd = make_trainer(args)
    opd.train(0, batch)
    assert opd.train_data_means["rollout/opd_reverse_kl"] == pytest.approx(0.25, abs=1e-5)

    batch.teacher_log_probs = None
    with pytest.raises(ValueError, match="carries no teacher log-probs"):
        make_trainer(args).train(0, batch)
