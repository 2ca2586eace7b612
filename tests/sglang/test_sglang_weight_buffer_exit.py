"""The shared-memory weight sender's buffer leaves a process quietly and leaves nothing in /dev/shm, also when torch's
shared-memory manager is gone before the process's exit handlers run, as in an exiting Ray actor (Ray kills its child
processes, that manager among them, first). Before, the exit handler's free aborted the train actor at the end of a
run: SIGABRT in ``THManagedMapAllocator::close`` (Broken pipe). No engine is needed: buffers are filled, not sent."""

import subprocess
import sys
import textwrap
from pathlib import Path

CHILD = textwrap.dedent(
    """
    import os, signal, time
    import torch
    from slime_sglang import weight_updates
    from slime_sglang.processes import stat_fields

    def filled_sender():
        sender = weight_updates.SharedMemoryWeightSender(["http://127.0.0.1:1"])
        sender._copy_into_buffer([("w", torch.ones(1000))])
        return sender, "/dev/shm" + sender.buffer.untyped_storage()._share_filename_cpu_()[1].decode()

    def children():
        pids = [int(p) for p in os.listdir("/proc") if p.isdigit()]
        return [p for p in pids if (f := stat_fields(p)) and f[1] == str(os.getpid()) and f[0] != "Z"]

    # What the train actor does before it exits (slime.loop.end_actors -> TrainActor.close -> receiver.close).
    receiver = weight_updates.SGLangWeightReceiver(["http://127.0.0.1:1"], [1], [None], "gloo", 1 << 20)
    weight_updates._senders["shared_memory"], closed = filled_sender()
    receiver.close()
    assert not weight_updates._senders and not os.path.exists(closed), closed

    # A buffer still held at exit, after torch's manager is gone: what Ray does to an exiting actor's children.
    held, path = filled_sender()
    print("HELD", path, flush=True)
    managers = children()
    assert managers, "torch started no shared-memory manager"
    for pid in managers:
        os.kill(pid, signal.SIGKILL)
    while children():
        time.sleep(0.01)
    print("MANAGER GONE", flush=True)
    """
)

NATIVE_CRASH = ("SIGABRT", "Aborted", "Fatal Python error", "Unhandled exception", "Broken pipe", "terminate called")


def test_buffers_leave_dev_shm_and_the_process_exits_quietly_after_torch_s_manager_is_gone(tmp_path: Path) -> None:
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert not [line for line in output.splitlines() if any(word in line for word in NATIVE_CRASH)], output[-3000:]
    assert "MANAGER GONE" in result.stdout, output[-3000:]
    held = Path(next(line.split()[1] for line in result.stdout.splitlines() if line.startswith("HELD ")))
    assert not held.exists()  # removed by the exit handler
