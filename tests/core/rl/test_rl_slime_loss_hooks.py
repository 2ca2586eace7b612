"""slime's loss hooks in core's loss: ``--custom-pg-loss-reducer-function-path`` (a Dr.GRPO reducer, as slime's docs
show) and ``--loss-type custom_loss`` with ``--custom-loss-function-path``, on ragged float64 samples."""

import pytest
import torch
from rl_cases import make_args, random_samples, run_loss, to_batch

from slime.errors import ConfigError
from slime.rl.losses import compute_loss, is_slime_loss
from slime.rl.reduction import make_reducer

DR_GRPO_CONSTANT = 8.0
SEEN: dict = {}


def get_pg_loss_reducer(total_lengths, response_lengths, loss_masks, calculate_per_token_loss=False):
    """Dr.GRPO: each sample's masked sum over a constant, not over its own token count."""
    SEEN.update(total_lengths=total_lengths, response_lengths=response_lengths, masks=[m.tolist() for m in loss_masks])

    def reducer(x: torch.Tensor) -> torch.Tensor:
        return sum(
            (x_i * mask).sum() / DR_GRPO_CONSTANT
            for x_i, mask in zip(x.split(response_lengths), loss_masks, strict=True)
        )

    return reducer


def my_loss(args, batch, reducer):
    loss = reducer(-batch.log_probs * batch.advantages)
    return loss, {"loss": loss.detach(), "my_metric": torch.tensor(3.0)}


@pytest.mark.parametrize("per_token", [False, True])
def test_dr_grpo_reducer_replaces_the_pg_loss_reduction_only(per_token):
    samples = random_samples(11)
    default_args = make_args(calculate_per_token_loss=per_token)
    _, _, default = run_loss(default_args, samples)
    args = make_args(
        calculate_per_token_loss=per_token, custom_pg_loss_reducer_function_path=f"{__name__}.get_pg_loss_reducer"
    )
    batch = to_batch(samples)
    batch.total_lengths = [len(s["mask"]) + 5 for s in samples]  # 5 prompt tokens each
    reducer = make_reducer(batch.response_lengths, batch.loss_masks, per_token)
    loss, metrics = compute_loss(args, batch, reducer)

    assert SEEN["total_lengths"] == batch.total_lengths and SEEN["masks"] == [s["mask"] for s in samples]
    # slime divides the reducer's sum over samples (per-token mode: over tokens) by the step's samples (tokens).
    step_size = sum(sum(s["mask"]) for s in samples) if per_token else len(samples)
    ratio = (batch.log_probs - batch.old_log_probs).exp()
    eps = default_args.eps_clip
    per_token_loss = torch.maximum(-ratio * batch.advantages, -ratio.clamp(1 - eps, 1 + eps) * batch.advantages)
    expected = (per_token_loss * batch.loss_masks).sum() / DR_GRPO_CONSTANT / step_size
    assert metrics["pg_loss"].item() == pytest.approx(expected.item(), rel=1e-10)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-10)
    # The other terms keep the default reduction.
    assert metrics["pg_clipfrac"].item() == pytest.approx(default["pg_clipfrac"].item(), rel=1e-12)
    assert metrics["ppo_kl"].item() == pytest.approx(default["ppo_kl"].item(), rel=1e-12)


def test_custom_loss_is_the_function_custom_loss_function_path_names():
    samples = random_samples(12)
    args = make_args(loss_type="custom_loss", custom_loss_function_path=f"{__name__}.my_loss")
    batch, loss, metrics = run_loss(args, samples)
    reducer = make_reducer(batch.response_lengths, batch.loss_masks, False)
    assert loss.item() == pytest.approx(reducer(-batch.log_probs * batch.advantages).item(), rel=1e-12)
    assert metrics["my_metric"].item() == 3.0
    (grad,) = torch.autograd.grad(loss, [batch.log_probs])
    assert torch.equal(grad != 0, (batch.loss_masks != 0) & (batch.advantages != 0))


def slime_loss(args, batch, logits, sum_of_sample_mean):
    raise AssertionError("slime's form needs the logits: only a backend runs it")


def test_the_two_loss_forms_are_told_apart_by_signature():
    def renamed(a, b, c, d):  # four positional arguments: slime's, whatever their names
        pass

    def ours_with_option(args, batch, reducer, scale=1.0):  # takes three: ours
        pass

    def logits_keyword(args, batch, logits=None, sum_of_sample_mean=None):  # named as slime's: slime's
        pass

    for function, slime_form in [
        (slime_loss, True),
        (renamed, True),
        (logits_keyword, True),
        (my_loss, False),
        (ours_with_option, False),
        (lambda *args: None, False),
    ]:
        assert is_slime_loss(function, "--custom-loss-function-path 'x'") is slime_form, function

    def three_with_logits(args, batch, logits):
        pass

    for function in (three_with_logits, lambda args, batch: None, lambda args, batch, reducer, *, extra: None):
        with pytest.raises(ConfigError, match=r"^--custom-loss-function-path 'x': .* is neither slime's loss"):
            is_slime_loss(function, "--custom-loss-function-path 'x'")


def test_core_refuses_slime_form_in_one_line_as_it_needs_a_backends_logits():
    args = make_args(loss_type="custom_loss", custom_loss_function_path=f"{__name__}.slime_loss")
    with pytest.raises(
        ConfigError, match=rf"^--custom-loss-function-path '{__name__}.slime_loss': a loss in slime's form"
    ):
        run_loss(args, random_samples(3))
