"""A plugin written outside this repository (a temporary package) is built and installed into a fresh environment;
its own tests, written with slime.testing, pass there and use it by name, as its author would run them."""

import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

PYPROJECT = """\
[project]
name = "slime-acme-rewards"
version = "2.0.1"
requires-python = ">=3.12"
dependencies = ["slime-core"]

[project.entry-points.slime]
acme = "slime_acme_rewards.plugin"

[build-system]
requires = ["uv_build>=0.9,<0.14"]
build-backend = "uv_build"
"""

REWARDS = '''\
"""Acme's rewards: exact match, and a filter that keeps groups whose rewards differ."""

import statistics


async def exact_match(args, sample):
    return 1.0 if sample.response.strip() == str(sample.label).strip() else 0.0


def rewards_differ(args, group):
    return statistics.pstdev(sample.reward for sample in group) > 0
'''

PLUGIN = """\
from slime.hookspecs import hookimpl
from slime_acme_rewards.rewards import exact_match, rewards_differ


@hookimpl
def slime_register_reward_functions(register):
    register("acme_exact", exact_match)


@hookimpl
def slime_register_sample_filters(register):
    register("acme_rewards_differ", rewards_differ)
"""

PLUGIN_TESTS = """\
import asyncio

import pytest

from slime.config.arguments import parse_args
from slime.plugins import registered_by
from slime.rollout.reward import compute_reward, resolve_reward_function
from slime.testing.contracts import ContractError, check_reward_function, check_sample_filter
from slime.types import Sample


def test_exact_match_honours_the_reward_contract():
    samples = [Sample(response="42", label=42), Sample(response=" 41", label="42")]
    assert check_reward_function("acme_exact", samples) == [1.0, 0.0]


def test_filter_honours_the_filter_contract():
    groups = [[Sample(reward=1.0), Sample(reward=0.0)], [Sample(reward=1.0), Sample(reward=1.0)]]
    assert check_sample_filter("acme_rewards_differ", groups) == [True, False]


def test_usable_by_name():
    assert registered_by("acme") == {"reward_functions": ["acme_exact"], "sample_filters": ["acme_rewards_differ"]}
    args = parse_args(["--rm-type", "boxed_acme_exact"])
    sample = Sample(response="so: \\\\boxed{42}", label="42")
    assert asyncio.run(compute_reward(args, sample)) == 1.0
    assert resolve_reward_function(args).describe() == (
        "reward function 'boxed_acme_exact' (plugin 'acme' (distribution slime-acme-rewards 2.0.1))"
    )


async def grabs_label(args, sample):
    sample.label = None
    return 1.0


def test_the_kit_catches_a_reward_that_breaks_its_contract():
    message = "grabs_label changed sample 0: 'label' from '42' to None; a reward function only reads the sample"
    with pytest.raises(ContractError, match=message):
        check_reward_function(grabs_label, [Sample(label="42")])
"""


@pytest.fixture(scope="module")
def acme_env(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("acme")
    package = root / "slime-acme-rewards"
    module = package / "src" / "slime_acme_rewards"
    module.mkdir(parents=True)
    (package / "pyproject.toml").write_text(PYPROJECT)
    (module / "__init__.py").write_text('"""Acme rewards for slime."""\n')
    (module / "rewards.py").write_text(REWARDS)
    (module / "plugin.py").write_text(PLUGIN)
    (package / "tests").mkdir()
    (package / "tests" / "test_acme.py").write_text(PLUGIN_TESTS)

    # A fresh environment that sees the development packages, with the plugin installed as a user would.
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site_packages = venv / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"
    dev_site = sysconfig.get_paths()["purelib"]
    (site_packages / "_slime_dev_env.pth").write_text(f"import site; site.addsitedir({dev_site!r})\n")
    python = venv / "bin" / "python"
    install = [sys.executable, "-m", "uv", "pip", "install", "-q", "--python", str(python), "--no-deps", str(package)]
    subprocess.run(install, check=True)
    return python, package


def test_a_plugin_built_elsewhere_passes_its_own_kit_tests_and_is_usable_by_name(acme_env):
    python, package = acme_env
    result = subprocess.run(
        [str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"],
        cwd=package,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "4 passed" in result.stdout
