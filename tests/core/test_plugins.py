import pytest

from slime.errors import PluginError
from slime.hookspecs import hookimpl
from slime.plugins import (
    load_object,
    register_plugin,
    registered_by,
    registry,
    resolve,
    resolve_with_origin,
    unregister_plugin,
)


async def always_one(args, sample):
    return 1.0


class RewardPlugin:
    @hookimpl
    def slime_register_reward_functions(self, register):
        register("always_one", always_one)


class SameNamePlugin:
    @hookimpl
    def slime_register_reward_functions(self, register):
        register("always_one", always_one)


@pytest.fixture
def reward_plugin():
    register_plugin(RewardPlugin(), "test-rewards")
    yield
    unregister_plugin("test-rewards")


def test_registered_name_resolves(reward_plugin):
    assert resolve("reward_functions", "always_one") is always_one
    assert registered_by("test-rewards") == {"reward_functions": ["always_one"]}


def test_dotted_path_resolves_like_slimes_custom_path_flags():
    assert resolve("reward_functions", f"{__name__}.always_one") is always_one


def test_resolution_says_where_the_object_came_from(reward_plugin):
    assert resolve_with_origin("reward_functions", "always_one") == (always_one, "plugin 'test-rewards'")
    path = f"{__name__}.always_one"
    assert resolve_with_origin("reward_functions", path, "--custom-rm-path") == (always_one, "from --custom-rm-path")


def test_a_name_that_must_not_import_code_is_looked_up_only(reward_plugin):
    with pytest.raises(PluginError, match=r"unknown reward function 'os.system' \(from the data\); registered: "):
        resolve_with_origin("reward_functions", "os.system", "the data", importable=False)


def test_unknown_name_lists_the_registered_alternatives(reward_plugin):
    with pytest.raises(PluginError) as err:
        resolve("reward_functions", "alwys_one")
    assert str(err.value).startswith("unknown reward function 'alwys_one' (from --rm-type); registered: ")
    assert "always_one" in str(err.value)


def test_unknown_name_with_custom_flag(reward_plugin):
    with pytest.raises(PluginError, match=r"unknown reward function 'nope' \(from --eval-config rm_type\)"):
        resolve("reward_functions", "nope", flag="--eval-config rm_type")


def test_a_name_registered_twice_names_both_plugins(reward_plugin):
    register_plugin(SameNamePlugin(), "test-same-name")
    try:
        with pytest.raises(PluginError) as err:
            registry("reward_functions")
        assert str(err.value) == (
            "reward function 'always_one' is registered twice: by plugin 'test-rewards' and by plugin 'test-same-name'"
        )
    finally:
        unregister_plugin("test-same-name")


def test_two_plugins_with_one_name_is_an_error(reward_plugin):
    with pytest.raises(PluginError, match="two plugins are named 'test-rewards'"):
        register_plugin(SameNamePlugin(), "test-rewards")


def test_load_object_errors_name_the_flag_and_the_problem():
    with pytest.raises(PluginError) as err:
        load_object("no_such_package.mod.fn", "--custom-rm-path")
    assert str(err.value) == (
        "--custom-rm-path 'no_such_package.mod.fn': cannot import module 'no_such_package.mod': "
        "ModuleNotFoundError: No module named 'no_such_package'"
    )
    with pytest.raises(PluginError) as err:
        load_object("json.no_such_function", "--rollout-function-path")
    assert (
        str(err.value)
        == "--rollout-function-path 'json.no_such_function': module 'json' has no attribute 'no_such_function'"
    )
    with pytest.raises(PluginError) as err:
        load_object("justaname", "--custom-rm-path")
    assert str(err.value) == "--custom-rm-path 'justaname' is not a dotted path of the form 'package.module.function'"
