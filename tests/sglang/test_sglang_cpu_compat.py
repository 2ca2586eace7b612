"""The sgl_kernel stand-in: every name imports in the server's process, calling one fails loudly, and only the
server subprocess sees it."""

import os
import subprocess
import sys
from pathlib import Path

from slime_sglang.cpu_compat import SGL_KERNEL_STANDIN_DIR
from slime_sglang.server import ServerConfig, server_command, server_env

SMOKE = """
import sgl_kernel, sgl_kernel.kvcacheio
from sgl_kernel import rmsnorm, fused_add_rmsnorm
from sgl_kernel.scalar_type import ScalarType, scalar_types
from sgl_kernel.flash_attn import flash_attn_varlen_func
from sgl_kernel.allreduce import *
assert sgl_kernel.__file__.startswith(%r), sgl_kernel.__file__
print(scalar_types.uint4b8)
try:
    rmsnorm(1)
except NotImplementedError as exc:
    print(exc)
"""


def test_every_name_imports_and_a_call_names_the_kernel(tmp_path: Path) -> None:
    env = server_env(ServerConfig(model_path="m", port=1, log_path=tmp_path / "log", cpu=True))
    result = subprocess.run(
        [sys.executable, "-c", SMOKE % str(SGL_KERNEL_STANDIN_DIR)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "sgl_kernel.scalar_type.scalar_types.uint4b8" in result.stdout
    assert "sgl_kernel.rmsnorm is a CUDA kernel" in result.stdout


def test_only_the_cpu_server_process_gets_the_stand_in(tmp_path: Path) -> None:
    cpu = ServerConfig(model_path="m", port=1, log_path=tmp_path / "log", cpu=True)
    gpu = ServerConfig(model_path="m", port=1, log_path=tmp_path / "log", cpu=False)
    assert server_env(cpu, base={})["PYTHONPATH"].split(os.pathsep)[0] == str(SGL_KERNEL_STANDIN_DIR)
    assert server_env(cpu, base={})["SGLANG_USE_CPU_ENGINE"] == "1"
    assert "PYTHONPATH" not in server_env(gpu, base={})
    assert str(SGL_KERNEL_STANDIN_DIR) not in sys.path  # slime's own process keeps the real package


def test_cpu_defaults_give_way_to_the_users_flags(tmp_path: Path) -> None:
    config = ServerConfig(
        model_path="m", port=9, log_path=tmp_path / "log", cpu=True, sglang_args=["--dtype", "bfloat16"]
    )
    command = server_command(config)
    assert command[command.index("--device") + 1] == "cpu"
    assert command[command.index("--attention-backend") + 1] == "torch_native"
    assert command.count("--dtype") == 1 and command[command.index("--dtype") + 1] == "bfloat16"
    assert "--skip-server-warmup" in command and command[command.index("--port") + 1] == "9"
    assert "--sleep-on-idle" in command  # an idle CPU scheduler would otherwise spin on a core the trainer needs
    tp2 = server_env(ServerConfig(model_path="m", port=1, log_path=tmp_path / "l", cpu=True, tp_size=2), base={})
    assert tp2["SGLANG_CPU_OMP_THREADS_BIND"].count("|") == 1
    assert not Path(tp2["SGLANG_NCCL_SO_PATH"]).exists()  # NCCL off: TP ranks on CPU use gloo


EMPTY_CACHE = """
import gc
from sglang.srt.platforms import current_platform
collections = []
gc.callbacks.append(lambda phase, info: collections.append(phase) if phase == "start" else None)
current_platform.empty_cache()
print("sglang:", len(collections))
import slime_sglang.cpu_server
collections.clear()
current_platform.empty_cache()
print("slime cpu_server:", len(collections))
"""


def test_the_cpu_server_skips_sglangs_full_garbage_collection_on_every_cache_flush(tmp_path: Path) -> None:
    """SGLang's CPU ``empty_cache`` is a ``gc.collect()``, run on every /flush_cache (every weight update)."""
    env = server_env(ServerConfig(model_path="m", port=1, log_path=tmp_path / "log", cpu=True))
    result = subprocess.run([sys.executable, "-c", EMPTY_CACHE], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "sglang: 1" in result.stdout  # what SGLang does on its own
    assert "slime cpu_server: 0" in result.stdout
