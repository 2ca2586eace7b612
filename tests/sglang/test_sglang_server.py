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


@pytest.mark.slow
def test_a_port_taken_before_the_server_binds_it_is_retried_on_another(tiny_model: Path, tmp_path: Path) -> None:
    import socket

    with socket.socket() as squatter:  # another process took the port between choosing and binding it
        taken = free_port()
        squatter.bind(("127.0.0.1", taken))
        squatter.listen()
        server = SGLangServer(
            ServerConfig(model_path=str(tiny_model), port=taken, log_path=tmp_path / "engine.log", cpu=True)
        )
        server.launch(timeout=400)
        try:
            assert server.config.port != taken and server.healthy()
        finally:
            server.shutdown()
    assert not [p for p in server.process.known_pids if pid_alive(p)]
