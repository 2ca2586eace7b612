"""slime-core's RL defaults, registered through the same hooks a third-party plugin implements."""

from slime.hookspecs import hookimpl
from slime.rl import advantages, losses, mis, tis


@hookimpl
def slime_register_advantage_estimators(register) -> None:
    register("grpo", advantages.grpo_advantages)
    register("gspo", advantages.grpo_advantages)
    register("cispo", advantages.grpo_advantages)
    register("reinforce_plus_plus", advantages.reinforce_plus_plus_advantages)
    register("reinforce_plus_plus_baseline", advantages.reinforce_plus_plus_baseline_advantages)
    register("ppo", advantages.ppo_advantages)


@hookimpl
def slime_register_policy_losses(register) -> None:
    register("policy_loss", losses.policy_loss)
    register("sft_loss", losses.sft_loss)
    register("value_loss", losses.value_loss)


@hookimpl
def slime_register_importance_weights(register) -> None:
    register(tis.DEFAULT_IMPORTANCE_WEIGHTS, tis.vanilla_tis)
    register("icepop", tis.icepop)
    register("mis", mis.mis)
    # The paths slime's own scripts pass to --custom-tis-function-path, so their command lines run unchanged.
    register("slime.backends.megatron_utils.loss.icepop_function", tis.icepop)
    register("examples.train_infer_mismatch_helper.mis.compute_mis_weights_with_cp", mis.mis)
