import argparse

import pytest
import torch

from slime import plugins
from slime.hookspecs import hookimpl
from slime.rl import advantages, losses, mis, tis
from slime.rl.advantages import AdvantageBatch, compute_advantages_and_returns
from slime.rl.losses import LossBatch, compute_loss
from slime.rl.reduction import make_reducer


def test_core_registers_the_rl_defaults():
    for name in ("grpo", "gspo", "cispo"):
        assert plugins.resolve("advantage_estimators", name) is advantages.grpo_advantages
    assert plugins.resolve("advantage_estimators", "reinforce_plus_plus") is advantages.reinforce_plus_plus_advantages
    assert plugins.resolve("advantage_estimators", "ppo") is advantages.ppo_advantages
    assert plugins.resolve("policy_losses", "policy_loss") is losses.policy_loss
    assert plugins.resolve("policy_losses", "sft_loss") is losses.sft_loss
    assert plugins.resolve("policy_losses", "value_loss") is losses.value_loss
    assert plugins.resolve("importance_weights", "vanilla_tis") is tis.vanilla_tis
    assert plugins.resolve("importance_weights", "icepop") is tis.icepop
    assert plugins.resolve("importance_weights", "mis") is mis.mis
    # slime's own scripts name these by their dotted paths in slime's tree: they resolve to ours.
    assert plugins.resolve("importance_weights", "slime.backends.megatron_utils.loss.icepop_function") is tis.icepop
    mis_path = "examples.train_infer_mismatch_helper.mis.compute_mis_weights_with_cp"
    assert plugins.resolve("importance_weights", mis_path) is mis.mis
    assert plugins.registry("advantage_estimators").entries["grpo"].plugin.name == "core"


def length_bonus(args, batch):
    """A third party's estimator: the reward plus a bonus per trainable token."""
    advantages = [
        reward + 0.01 * mask.sum() * torch.ones(mask.shape)
        for reward, mask in zip(batch.rewards, batch.loss_masks, strict=True)
    ]
    return advantages, advantages


def halve_masked(args, *, pg_loss, train_log_probs, rollout_log_probs, loss_masks, response_lengths):
    """A third party's importance weights: halve every token's loss and drop each sample's first token."""
    mask = loss_masks.clone()
    start = 0
    for length in response_lengths:
        mask[start] = 0
        start += length
    return pg_loss * 0.5, mask, {"halved": torch.ones_like(pg_loss)}


class ThirdPartyPlugin:
    @staticmethod
    @hookimpl
    def slime_register_advantage_estimators(register):
        register("length_bonus", length_bonus)

    @staticmethod
    @hookimpl
    def slime_register_importance_weights(register):
        register("halve_masked", halve_masked)


@pytest.fixture
def third_party():
    plugins.register_plugin(ThirdPartyPlugin, "rl-test-plugin")
    yield
    plugins.unregister_plugin("rl-test-plugin")


def test_third_party_estimator_is_selectable_by_name(third_party):
    args = argparse.Namespace(advantage_estimator="length_bonus", normalize_advantages=False, use_opd=False)
    batch = AdvantageBatch(rewards=[1.0, -1.0], loss_masks=[torch.tensor([1, 1, 0]), torch.tensor([1])])
    got, _ = compute_advantages_and_returns(args, batch)
    assert torch.cat(got).tolist() == pytest.approx([1.02, 1.02, 1.02, -0.99])
    assert plugins.registry("advantage_estimators").entries["length_bonus"].plugin.name == "rl-test-plugin"


def test_unknown_estimator_names_the_flag():
    args = argparse.Namespace(advantage_estimator="nope", normalize_advantages=False, use_opd=False)
    with pytest.raises(Exception, match="--advantage-estimator"):
        compute_advantages_and_returns(args, AdvantageBatch(rewards=[], loss_masks=[]))


def test_third_party_importance_weights_drive_the_policy_loss(third_party):
    args = argparse.Namespace(
        advantage_estimator="grpo",
        loss_type="policy_loss",
        eps_clip=0.2,
        eps_clip_high=None,
        eps_clip_c=None,
        entropy_coef=0.0,
        use_kl_loss=False,
        use_tis=True,
        get_mismatch_metrics=False,
        use_opsm=False,
        custom_tis_function_path="halve_masked",
        calculate_per_token_loss=False,
    )
    batch = LossBatch(
        response_lengths=[2, 3],
        loss_masks=torch.ones(5),
        log_probs=torch.full((5,), -1.0),
        rollout_log_probs=torch.full((5,), -1.0),
        advantages=torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0]),
    )
    loss, metrics = compute_loss(args, batch, make_reducer(batch.response_lengths, batch.loss_masks, False))
    # On-policy pg loss is -A; first tokens dropped, denominators kept, halved: ((-2 / 2) + (-9 / 3)) / 2 * 0.5.
    assert loss.item() == pytest.approx(-1.0)
    assert metrics["halved"].item() == pytest.approx(1.0)
