"""A server that cannot start fails with one clear error naming its log, and leaves no process behind."""

from pathlib import Path

import pytest

from slime_sglang.errors import ServerStartError
from slime_sglang.processes import free_port, pid_alive
from slime_sglang.server import ServerConfig, SGLangServer


@pytest.mark.slow
def test_start_failure_reports_the_log_and_leaves_no_process(tmp_path: Path) -> None:
    log = tmp_path / "engine.log"
    server = SGLangServer(
        ServerConfig(model_path=str(tmp_path / "no-such-model"), port=free_port(), log_path=log, cpu=True)
    )
    with pytest.raises(ServerStartError) as failure:
        server.launch(timeout=300)
    first_line = str(failure.value).splitlines()[0]
    assert "exited with code" in first_line and str(log) in first_line
    assert "no-such-model" in str(failure.value)  # the log's last lines say what went wrong
    assert not [p for p in server.process.known_pids if pid_alive(p)]
