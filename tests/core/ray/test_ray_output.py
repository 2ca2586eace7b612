"""What actors print in the last moments of a run reaches the driver's console (slime.ray.output)."""

import subprocess
import sys
import textwrap

DRIVER = textwrap.dedent(
    """
    import logging, sys
    import ray
    from slime.ray.output import drain_actor_output

    @ray.remote(num_cpus=0)
    class Talker:
        def last_words(self, n):
            for i in range(n):
                logging.warning("last words %d", i)

    ray.init(num_cpus=1, include_dashboard=False)
    ray.get(Talker.remote().last_words.remote(300))
    if sys.argv[1] == "drain":
        print("drained:", drain_actor_output(), flush=True)
    ray.shutdown()
    """
)


def run_driver(mode: str) -> subprocess.CompletedProcess:
    env_script = "import os; os.environ['RAY_ENABLE_UV_RUN_RUNTIME_ENV'] = '0'\n" + DRIVER
    return subprocess.run([sys.executable, "-c", env_script, mode], capture_output=True, text=True, timeout=180)


def test_lines_an_actor_printed_just_before_shutdown_are_all_printed_and_the_marker_is_not():
    result = run_driver("drain")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "drained: True" in result.stdout
    printed = [line for line in result.stderr.splitlines() if "last words" in line]
    assert [line.rsplit(" ", 1)[1] for line in printed] == [str(i) for i in range(300)]
    assert "slime-end-of-output" not in result.stderr + result.stdout
