"""Plugins installed as a third party would install them: built, installed into a fresh environment, found by
entry point, with no change to slime."""

import json
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

PLUGINS = Path(__file__).parents[1] / "plugins"


def make_env(root: Path, *plugin_dirs: str) -> Path:
    """A new virtual environment that sees the development environment's packages plus the given plugins."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True)
    site_packages = root / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"
    dev_site = sysconfig.get_paths()["purelib"]
    (site_packages / "_slime_dev_env.pth").write_text(f"import site; site.addsitedir({dev_site!r})\n")
    python = root / "bin" / "python"
    for plugin in plugin_dirs:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "uv",
                "pip",
                "install",
                "-q",
                "--python",
                str(python),
                "--no-deps",
                str(PLUGINS / plugin),
            ],
            check=True,
        )
    return python


def slime(python: Path, *argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(python), "-m", "slime.cli", *argv], capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def toy_env(tmp_path_factory) -> Path:
    return make_env(tmp_path_factory.mktemp("toy-env"), "slime-toy-plugin")


def test_slime_plugins_lists_every_package_and_the_toy_plugin(toy_env):
    result = slime(toy_env, "plugins", "--json")
    assert result.returncode == 0, result.stderr
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    assert {"core", "megatron", "sglang", "metrics", "toy"} <= set(rows)
    assert rows["toy"]["distribution"] == "slime-toy-plugin"
    assert rows["toy"]["version"] == "0.3.0"
    assert rows["toy"]["registered"]["reward_functions"] == ["toy_contains_label"]
    assert rows["core"]["distribution"] == "slime-core"
    text = slime(toy_env, "plugins").stdout
    assert "toy  (slime-toy-plugin 0.3.0)" in text
    assert "reward_functions: toy_contains_label" in text


def test_toy_reward_function_is_usable_by_name(toy_env):
    script = (
        "import asyncio\n"
        "from slime.config.arguments import parse_args\n"
        "from slime.plugins import resolve\n"
        "from slime.types import Sample\n"
        "args = parse_args(['--rm-type', 'toy_contains_label', '--toy-bonus', '0.5'])\n"
        "reward = resolve('reward_functions', args.rm_type)\n"
        "print(asyncio.run(reward(args, Sample(label='42', response='the answer is 42'))), args.toy_bonus)\n"
    )
    result = subprocess.run([str(toy_env), "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["1.0", "0.5"]


def test_plugin_that_fails_to_import_is_one_clear_line(tmp_path):
    python = make_env(tmp_path / "env", "slime-broken-plugin")
    result = slime(python, "plugins")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.strip() == (
        "slime plugins: error: plugin 'broken' (distribution slime-broken-plugin 1.2.3) failed to import "
        "'slime_broken_plugin': ModuleNotFoundError: No module named 'a_module_that_is_not_installed'"
    )


def test_two_distributions_registering_one_name_is_one_clear_line(tmp_path):
    python = make_env(tmp_path / "env", "slime-toy-plugin", "slime-clashing-plugin")
    result = slime(python, "plugins")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.strip() == (
        "slime plugins: error: reward function 'toy_contains_label' is registered twice: "
        "by plugin 'clashing' (distribution slime-clashing-plugin 0.0.1) and "
        "by plugin 'toy' (distribution slime-toy-plugin 0.3.0)"
    )
