"""A server that cannot start fails with one clear error naming its log, and leaves no process behind; a CPU server
retries a taken port and forks its children."""

import subprocess
from pathlib import Path

import pytest

from slime_sglang.errors import ServerStartError
from slime_sglang.processes import free_port, pid_alive, stat_fields
from slime_sglang.server import ServerConfig, SGLangServer


@pytest.mark.slow
def test_an_engine_that_cannot_start_reaches_the_driver_as_its_error_and_leaves_no_process(ray_runtime, tmp_path):
    """Through the rollout manager actor, as `slime train` starts engines: the driver gets the engine's own error
    (the CLI prints it as one line) and not only the actor's death, and no process of the server is left."""
    import ray

    from slime.cli import user_error
    from slime.config.arguments import parse_args
    from slime.ray.rollout_manager import RolloutManager

    model = tmp_path / "no-such-model"
    args = parse_args(["--hf-checkpoint", str(model), "--sglang-device", "cpu", "--output-dir", str(tmp_path)])
    manager = ray.remote(num_cpus=0)(RolloutManager).remote(args, train=False)
    try:
        with pytest.raises(ray.exceptions.RayTaskError) as failure:
            ray.get(manager.start.remote())
        error = user_error(failure.value)
        assert isinstance(error, ServerStartError), failure.value
        first_line = str(error).splitlines()[0]
        log = tmp_path / "sglang" / "engine_0.log"
        assert "exited with code" in first_line and str(log) in first_line
        assert "no-such-model" in str(error)  # the log's last lines say what went wrong
    finally:
        ray.get(manager.shutdown.remote())
        ray.kill(manager)
    left = subprocess.run(["pgrep", "-f", str(model)], capture_output=True, text=True).stdout.split()
    assert not left, left


@pytest.mark.slow
def test_a_cpu_server_retries_a_taken_port_and_forks_its_scheduler_and_detokenizer(
    tiny_model: Path, tmp_path: Path
) -> None:
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
            # The first attempt ended before loading the model (slime_sglang.cpu_server checks the port first).
            first_attempt = server.config.log_path.read_text().split("address already in use")[0]
            assert "Load weight" not in first_attempt
            # Forked, not spawned (a fresh interpreter re-imports SGLang: half of a start). A fork keeps its parent's
            # auxiliary vector, which every exec makes anew; the parent watch is exec'd.
            auxv = Path(f"/proc/{server.pid}/auxv").read_bytes()
            children = [p for p in server.pids() if (stat_fields(p) or ["", ""])[1] == str(server.pid)]
            forks = [p for p in children if Path(f"/proc/{p}/auxv").read_bytes() == auxv]
            assert len(children) == 3 and len(forks) == 2, (children, forks)
        finally:
            server.shutdown()
    assert not [p for p in server.process.known_pids if pid_alive(p)]
