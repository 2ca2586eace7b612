"""Atomic writes: a reader (or a resumed run) sees the old file or directory or the new one, never half of one."""

import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from slime.files import atomic_write, fresh_staging_dir, publish_dir


def test_a_file_is_written_whole_text_or_bytes(tmp_path: Path) -> None:
    target = tmp_path / "deeper" / "state.json"  # missing parents are created
    atomic_write(target, '{"position": 3}')
    assert target.read_text() == '{"position": 3}'
    atomic_write(target, b"\x00\xff")
    assert target.read_bytes() == b"\x00\xff"
    assert [p.name for p in target.parent.iterdir()] == ["state.json"]  # nothing left beside it


def test_a_process_killed_mid_write_leaves_the_old_file(tmp_path: Path) -> None:
    """The child may write 1000 bytes (RLIMIT_FSIZE); writing past that kills it (SIGXFSZ, which Python ignores
    by default, restored to its default action): it dies mid-write, with no chance to clean up."""
    target = tmp_path / "state.json"
    target.write_text("old")
    script = textwrap.dedent(
        f"""
        import resource, signal
        from slime.files import atomic_write

        signal.signal(signal.SIGXFSZ, signal.SIG_DFL)
        resource.setrlimit(resource.RLIMIT_FSIZE, (1000, 1000))
        atomic_write({str(target)!r}, "x" * 100_000)
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert result.returncode == -signal.SIGXFSZ, result.stderr
    assert target.read_text() == "old"
    atomic_write(target, "new")  # what the killed write left behind does not stand in the way of the next one
    assert target.read_text() == "new"


def test_a_directory_is_published_whole_and_replaces_the_previous_one(tmp_path: Path) -> None:
    target = tmp_path / "iter_0000001"
    staging = fresh_staging_dir(target)
    (staging / "weights").write_text("first")
    publish_dir(target)
    assert (target / "weights").read_text() == "first"

    staging = fresh_staging_dir(target)
    (staging / "weights").write_text("second")
    publish_dir(target)
    assert [p.name for p in target.iterdir()] == ["weights"] and (target / "weights").read_text() == "second"
    assert [p.name for p in tmp_path.iterdir()] == ["iter_0000001"]  # neither staging nor old copy is left


def test_a_directory_write_that_never_finished_leaves_the_previous_one(tmp_path: Path) -> None:
    target = tmp_path / "weight_v1"
    fresh_staging_dir(target).joinpath("config.json").write_text("{}")
    publish_dir(target)
    fresh_staging_dir(target).joinpath("half").write_text("written before a crash")  # never published

    assert [p.name for p in target.iterdir()] == ["config.json"]
    assert list(fresh_staging_dir(target).iterdir()) == []  # the next write starts from an empty directory
