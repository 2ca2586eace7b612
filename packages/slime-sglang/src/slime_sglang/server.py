"""One SGLang HTTP server as a subprocess: its command line, CPU mode, readiness, health and shutdown."""

import logging
import os
import sys
import time
from dataclasses import dataclass, field, replace
from functools import cache
from pathlib import Path

from slime_sglang.arguments import load_option_table
from slime_sglang.control_http import generates
from slime_sglang.cpu_compat import SGL_KERNEL_STANDIN_DIR
from slime_sglang.errors import ServerStartError
from slime_sglang.processes import ManagedProcess, free_port, tail

logger = logging.getLogger(__name__)

# SGLang options that CPU mode sets unless the user gave them (--sglang-<option>): the default CPU attention
# backend needs AMX, fp16 is 2.5x slower than fp32 on AVX2 machines, and a small KV pool starts faster (measured).
# Without --sleep-on-idle an idle scheduler polls in a busy loop and takes a core from the trainer, which on CPU
# shares the machine with it (bench/e2e_vs_trl.py).
CPU_DEFAULTS = {
    "device": ["--device", "cpu"],
    "attention_backend": ["--attention-backend", "torch_native"],
    "dtype": ["--dtype", "float32"],
    "max_total_tokens": ["--max-total-tokens", "8192"],
    "sleep_on_idle": ["--sleep-on-idle"],
}


@cache
def _dest_of_option() -> dict[str, str]:
    return {option: entry["dest"] for entry in load_option_table() for option in entry["options"]}


def given_dests(sglang_args: list[str]) -> set[str]:
    """SGLang option names (dests) that appear in a list of raw SGLang tokens."""
    dest_of = _dest_of_option()
    return {dest_of[t.split("=")[0]] for t in sglang_args if t.startswith("--") and t.split("=")[0] in dest_of}


@dataclass
class ServerConfig:
    model_path: str
    port: int
    log_path: Path
    host: str = "127.0.0.1"
    seed: int = 1234
    tp_size: int = 1
    cpu: bool = False
    nccl_port: int | None = None
    enable_memory_saver: bool = False
    return_routed_experts: bool = False  # --use-rollout-routing-replay
    gpu_ids: list[str] = field(default_factory=list)  # the devices Ray gave the engine; empty: leave them as they are
    sglang_args: list[str] = field(default_factory=list)  # raw tokens from the --sglang-* flags

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


def server_command(config: ServerConfig) -> list[str]:
    # CPU servers start through slime's entry, which lets SGLang's seeded sampling run on CPU.
    command = [sys.executable, "-m", "slime_sglang.cpu_server" if config.cpu else "sglang.launch_server"]
    command += ["--model-path", config.model_path, "--host", config.host, "--port", str(config.port)]
    command += ["--random-seed", str(config.seed), "--tp-size", str(config.tp_size), "--skip-server-warmup"]
    if config.nccl_port is not None:
        command += ["--nccl-port", str(config.nccl_port)]
    if config.enable_memory_saver:
        command += ["--enable-memory-saver"]
    if config.return_routed_experts and "enable_return_routed_experts" not in given_dests(config.sglang_args):
        command += ["--enable-return-routed-experts"]
    if config.gpu_ids:
        command += ["--base-gpu-id", "0"]  # the first of CUDA_VISIBLE_DEVICES (server_env)
    if config.cpu:
        given = given_dests(config.sglang_args)
        for dest, tokens in CPU_DEFAULTS.items():
            if dest not in given:
                command += tokens
    return command + list(config.sglang_args)


def server_env(config: ServerConfig, base: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ if base is None else base)
    if config.gpu_ids:
        # Only its own devices: TP rank i of the server takes the i-th of them.
        env["CUDA_VISIBLE_DEVICES"] = ",".join(config.gpu_ids)
    if config.cpu:
        # Without it SGLang's RoPE imports vllm. The sgl_kernel stand-in goes on this process's path only.
        env["SGLANG_USE_CPU_ENGINE"] = "1"
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(SGL_KERNEL_STANDIN_DIR), env.get("PYTHONPATH")) if p)
        if config.tp_size > 1 and "SGLANG_CPU_OMP_THREADS_BIND" not in env:
            env["SGLANG_CPU_OMP_THREADS_BIND"] = cpu_thread_binding(config.tp_size)
        if config.tp_size > 1:
            # TP ranks on CPU talk over gloo. With the venv's libnccl found, SGLang builds a NCCL communicator for
            # them and refuses the cpu device (pynccl.py:116); a library path that does not load turns NCCL off.
            env["SGLANG_NCCL_SO_PATH"] = str(SGL_KERNEL_STANDIN_DIR / "no-nccl-on-cpu.so")
    return env


def cpu_thread_binding(tp_size: int) -> str:
    """``SGLANG_CPU_OMP_THREADS_BIND`` for TP ranks on CPU: this process's cores split into ``tp_size`` parts."""
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < tp_size:
        cores = (cores * tp_size)[:tp_size]  # fewer cores than ranks: ranks share cores (slow but works)
    per_rank = len(cores) // tp_size
    parts = [cores[i * per_rank : (i + 1) * per_rank] for i in range(tp_size)]
    return "|".join(",".join(str(c) for c in part) for part in parts)


def _port_was_taken(log_path: Path, start_offset: int) -> bool:
    """Whether this launch attempt's part of the (appended) log reports a failed bind."""
    with open(log_path, "rb") as log:
        log.seek(start_offset)
        return b"address already in use" in log.read()


class SGLangServer:
    """One SGLang HTTP server process (with its scheduler and detokenizer children)."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.process = ManagedProcess(server_command(config), config.log_path, server_env(config))

    @property
    def url(self) -> str:
        return self.config.url

    @property
    def pid(self) -> int | None:
        return self.process.pid

    def launch(self, timeout: float, attempts: int = 3) -> None:
        """Start the server and wait until it answers ``/health_generate``; stop it and raise if it cannot.

        A port taken by another process between choosing it and binding it is retried on a new port.
        """
        for attempt in range(attempts):
            log_offset = self.config.log_path.stat().st_size if self.config.log_path.exists() else 0
            self.process.start()
            try:
                self.wait_ready(timeout)
                return
            except ServerStartError:
                self.shutdown()
                if attempt + 1 == attempts or not _port_was_taken(self.config.log_path, log_offset):
                    raise
            except BaseException:
                self.shutdown()
                raise
            logger.warning("port %d of %s was taken meanwhile; retrying on another", self.config.port, self.url)
            self.config = replace(self.config, port=free_port(self.config.host))
            self.process = ManagedProcess(server_command(self.config), self.config.log_path, server_env(self.config))

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            code = self.process.exit_code()
            if code is not None:
                raise ServerStartError(self._failure(f"exited with code {code} during start-up"))
            if generates(self.url, timeout=10):
                self.process.pids()  # remember the children for the shutdown check
                return
            if time.monotonic() > deadline:
                raise ServerStartError(self._failure(f"did not answer /health_generate within {timeout:.0f} s"))
            time.sleep(1.0)

    def _failure(self, what: str) -> str:
        log = self.config.log_path
        return f"SGLang server {self.url} {what}; log {log}, last lines:\n{tail(log)}"

    def healthy(self, timeout: float = 30.0) -> bool:
        """The process runs and generates one token within ``timeout`` seconds."""
        return self.process.running() and generates(self.url, timeout)

    def running(self) -> bool:
        return self.process.running()

    def pids(self) -> list[int]:
        return self.process.pids()

    def shutdown(self) -> None:
        """Stop the server and every child; raises if any of its pids survives."""
        self.process.stop()
