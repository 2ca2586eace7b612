"""Start one SGLang CPU server on a model directory for a bench, the way the rollout backend starts its engines."""

import tempfile
from pathlib import Path

from slime_sglang.processes import free_port
from slime_sglang.server import ServerConfig, SGLangServer


def start_server(model_dir: Path, extra_args: list[str] | None = None, timeout: float = 300.0) -> SGLangServer:
    log = Path(tempfile.mkdtemp(prefix="slime-bench-sglang-")) / "server.log"
    config = ServerConfig(
        model_path=str(model_dir), port=free_port(), nccl_port=free_port(), log_path=log, cpu=True,
        sglang_args=list(extra_args or []),
    )  # fmt: skip
    server = SGLangServer(config)
    server.launch(timeout)
    return server
