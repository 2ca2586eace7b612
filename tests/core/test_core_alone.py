"""slime-core installs and imports without any backend package."""

import subprocess
import sys
from pathlib import Path

import pytest

CORE = Path(__file__).parents[2] / "packages" / "slime-core"


@pytest.mark.slow
def test_slime_core_installs_alone_in_a_clean_venv(tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "uv", "venv", "-q", "--python", sys.executable, str(venv)], check=True)
    python = venv / "bin" / "python"
    subprocess.run([sys.executable, "-m", "uv", "pip", "install", "-q", "--python", str(python), str(CORE)], check=True)
    script = (
        "import importlib.util, slime, slime.config.arguments, slime.plugins\n"
        "print([m for m in ('slime_megatron', 'slime_sglang', 'slime_metrics') if importlib.util.find_spec(m)])\n"
        "print([p.name for p in slime.plugins.plugins()])\n"
    )
    result = subprocess.run([str(python), "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["[]", "['core']"]
