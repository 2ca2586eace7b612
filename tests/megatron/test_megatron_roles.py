"""--megatron-config-path: slime's role YAML gives the actor and PPO's critic their own arguments (roles.py)."""

import pytest
from megatron_helpers import make_args

from slime.errors import ConfigError
from slime_megatron.roles import role_args


def _args(tiny_models, tmp_path, yaml_text: str | None, *flags: str):
    extra = ()
    if yaml_text is not None:
        path = tmp_path / "roles.yaml"
        path.write_text(yaml_text)
        extra = ("--megatron-config-path", str(path))
    return make_args(tiny_models["qwen3"], "--advantage-estimator", "ppo", *extra, *flags)


def test_each_role_gets_its_overrides_on_top_of_the_command_line(tiny_models, tmp_path):
    args = _args(
        tiny_models,
        tmp_path,
        # slime's example: the critic learns faster; YAML reads 1e-5 as text, the command line would make it a float.
        "megatron:\n"
        "  - {name: default, role: critic, overrides: {lr: 1e-5, num_nodes: 4, save: /ckpt/critic-own}}\n"
        "  - {name: default, role: actor, args: {lr: 1e-6, clip_grad: 0.5}}\n",
        "--save", "/ckpt", "--load", "/ckpt", "--weight-decay", "0.05",
    )  # fmt: skip
    actor, critic = role_args(args, "actor"), role_args(args, "critic")
    assert (actor.lr, actor.clip_grad, actor.weight_decay) == (1e-6, 0.5, 0.05)
    assert (critic.lr, critic.clip_grad, critic.weight_decay) == (1e-5, args.clip_grad, 0.05)
    assert isinstance(critic.lr, float)
    assert (critic.save, critic.load) == ("/ckpt/critic-own", "/ckpt/critic")  # its entry names save, not load
    assert (actor.save, actor.load) == ("/ckpt", "/ckpt")
    assert args.lr == 1e-3  # the command line's arguments are left as they were


def test_without_a_config_the_critic_mirrors_the_actor_minus_what_only_an_actor_does(tiny_models, tmp_path):
    args = _args(tiny_models, tmp_path, None, "--save", "/ckpt")  # make_args has --use-kl-loss
    critic = role_args(args, "critic")
    assert (critic.lr, critic.micro_batch_size, critic.global_batch_size) == (args.lr, 1, 4)
    assert critic.use_kl_loss is False and critic.kl_coef == 0.0 and critic.use_opd is False
    assert (critic.save, critic.load) == ("/ckpt/critic", None)
    assert role_args(args, "actor").use_kl_loss is True


@pytest.mark.parametrize(
    ("yaml_text", "message"),
    [
        ("megatron: {role: critic}\n", "expected a top-level 'megatron' list of role entries"),
        ("megatron:\n  - {role: reward_model}\n", "entry 0 needs role: actor or role: critic, got 'reward_model'"),
        ("megatron:\n  - {role: critic}\n  - {role: critic}\n", "2 entries have role critic; at most one may"),
        ("megatron:\n  - {role: critic, overrides: [lr]}\n", "role critic's overrides must be a mapping"),
        (
            "megatron:\n  - {role: actor, overrides: {sequence_parallel: true}}\n",
            "role actor sets sequence_parallel=True",
        ),
        ("megatron: [\n", "not valid YAML"),
    ],
)
def test_a_bad_role_config_is_one_line_naming_the_file(tiny_models, tmp_path, yaml_text, message):
    with pytest.raises(ConfigError) as error:
        _args(tiny_models, tmp_path, yaml_text, "--train-backend", "megatron")
    assert str(error.value).startswith(f"--megatron-config-path {tmp_path / 'roles.yaml'}: ")
    assert message in str(error.value) and "\n" not in str(error.value)
