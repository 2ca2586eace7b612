"""Run `slime train` as a separate process, inject a fault, resume with `--load`, and account for every prompt.

A *chain* is one training run cut into segments: each segment is a `slime train` process (its own session, so one
SIGKILL of its process group is a kill -9 of the driver and every process it started) with its own `--output-dir`;
every segment after the first resumes from the checkpoint directory they share.

Accounting ("no prompt lost or trained twice"). A rollout id's training counts once it is checkpointed: work done
after the last checkpoint of a killed segment (generated, even trained, but not saved) is lost with the process
and is redone by the next segment, which is how a resume must behave. So segment ``s`` owns the rollout ids from
where it started (the pointer it resumed from, plus one) up to where the next segment started. The prompts of the
run are those owned rollouts' prompts, taken from each segment's own reward log (`slime_testkit.prompt_log`, keyed by the
data source's group index); they must equal, position by position, the prompts an uninterrupted run trains.
"""

import json
import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from slime_sglang.processes import pid_alive, stat_fields
from slime_testkit.prompt_log import read_prompt_log

POINTER = "latest_checkpointed_iteration.txt"


def slime_env(**extra: str) -> dict[str, str]:
    """The test session's environment (no network, W&B offline), plus ``extra``."""
    return {**os.environ, **extra}


def pointer(ckpt: Path) -> int | None:
    path = ckpt / POINTER
    return int(path.read_text().strip()) if path.exists() else None


def descendants(root: int) -> set[int]:
    """``root`` and every live process below it (by parent pid, so children that left its session count too)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = stat_fields(int(entry))
            if fields is not None and fields[0] != "Z":
                children.setdefault(int(fields[1]), []).append(int(entry))
    found, todo = set(), [root]
    while todo:
        pid = todo.pop()
        found.add(pid)
        todo.extend(children.get(pid, []))
    return found


def command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def ray_workers() -> set[int]:
    """The Ray worker processes (``ray::...``) below this test process (a Ray runtime it started)."""
    return {pid for pid in descendants(os.getpid()) if command_line(pid).startswith("ray::")}


@dataclass
class Segment:
    out: Path
    start_rollout: int  # the rollout id this segment begins with (pointer it resumed from + 1)
    process: subprocess.Popen
    # Ray workers of this test process that existed before the segment: with RAY_ADDRESS pointing at the test's Ray
    # runtime, the segment's actors are workers of that runtime, not children of the driver.
    workers_before: set[int] = field(default_factory=set)

    def log(self) -> str:
        return (self.out / "driver.log").read_text(errors="replace")

    def metric_lines(self) -> list[dict]:
        path = self.out / "metrics.jsonl"
        if not path.exists():
            return []
        lines = []
        for line in path.read_text().splitlines():
            try:
                lines.append(json.loads(line))
            except json.JSONDecodeError:  # the last line, cut by a kill
                pass
        return lines

    def rollouts_logged(self) -> list[int]:
        return [line["rollout/step"] for line in self.metric_lines() if "rollout/raw_reward" in line]

    def pids(self, name: str) -> list[int]:
        """Live processes of this segment whose command line contains ``name`` (``ray::TrainActor``, ...)."""
        return sorted(pid for pid in descendants(self.process.pid) if name in command_line(pid))

    def wait_for(self, condition, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if self.process.poll() is not None:
                raise AssertionError(f"segment {self.out.name} ended (code {self.process.returncode}) before {what}")
            if time.monotonic() > deadline:
                raise AssertionError(f"segment {self.out.name}: no {what} within {timeout:.0f} s")
            time.sleep(0.1)

    def wait_end(self, timeout: float) -> int:
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"segment {self.out.name} hung: still running after {timeout:.0f} s") from None

    def kill(self) -> None:
        """kill -9 the driver's whole process group; every process it started (with its Ray actors, also those a
        shared Ray runtime hosts, and their engines) must be gone within 30 s."""
        tree = self.tree()
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()
        self.assert_gone(tree)

    def tree(self) -> set[int]:
        """The driver, everything below it, and this segment's workers of a shared Ray runtime (with their children)."""
        return descendants(self.process.pid) | {
            pid for worker in ray_workers() - self.workers_before for pid in descendants(worker)
        }

    def assert_gone(self, tree: set[int], timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and any(pid_alive(pid) for pid in tree):
            time.sleep(0.2)
        orphans = {pid: command_line(pid)[:120] for pid in tree if pid_alive(pid)}
        assert not orphans, f"processes of {self.out.name} outlived its driver: {orphans}"


class Chain:
    """One run of ``num_rollout`` rollouts, cut into segments by faults; ``argv`` excludes output dir and --load."""

    def __init__(self, root: Path, argv: list[str], num_rollout: int, batch: int) -> None:
        self.root = root
        self.ckpt = root / "ckpt"
        self.argv = [*argv, "--num-rollout", str(num_rollout), "--save", str(self.ckpt), "--save-interval", "1"]
        self.num_rollout = num_rollout
        self.batch = batch  # prompts per rollout (--rollout-batch-size)
        self.segments: list[Segment] = []

    def start(self, *extra: str, env: dict[str, str] | None = None) -> Segment:
        """The next segment: `slime train` with this chain's flags plus ``extra``, resuming from the checkpoint."""
        self.check_checkpoint()
        latest = pointer(self.ckpt)
        out = self.root / f"segment_{len(self.segments)}"
        out.mkdir(parents=True)
        workers_before = ray_workers()
        load = ["--load", str(self.ckpt)] if latest is not None else []
        with open(out / "driver.log", "wb") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "slime.cli", "train", *self.argv, *load, "--output-dir", str(out), *extra],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env or slime_env(),
                start_new_session=True,  # a process group of its own: one killpg is a kill -9 of the whole run
            )
        segment = Segment(out, 0 if latest is None else latest + 1, process, workers_before)
        self.segments.append(segment)
        return segment

    def check_checkpoint(self) -> None:
        """The checkpoint the pointer names is complete, with its data position: never half-written."""
        latest = pointer(self.ckpt)
        if latest is None:
            return
        folder = self.ckpt / f"iter_{latest:07d}"
        assert folder.is_dir(), f"the pointer names {folder.name}, which does not exist"
        files = {p.name for p in folder.iterdir()}
        complete = {"model.safetensors", "optimizer.pt", "meta.json"} <= files or "metadata.json" in files
        assert complete, f"{folder.name} is half-written: {sorted(files)}"
        assert (self.ckpt / "rollout" / f"data_source_{latest}.json").is_file(), f"no data position for {latest}"

    def trained_prompts(self) -> list[str]:
        """The run's prompt labels in training order, each rollout id taken from the segment that checkpointed it."""
        starts = [segment.start_rollout for segment in self.segments] + [self.num_rollout]
        trained = []
        for segment, begin, end in zip(self.segments, starts, starts[1:], strict=False):
            logged = read_prompt_log(segment.out)
            for group in range(begin * self.batch, end * self.batch):
                trained.append(logged.get(group, "<lost>"))
        return trained

    def rollout_ids_continue(self) -> None:
        """Each segment's first logged rollout is the one after the checkpoint it resumed from."""
        for segment in self.segments:
            logged = segment.rollouts_logged()
            if logged:
                assert logged == list(range(segment.start_rollout, segment.start_rollout + len(logged))), (
                    segment.out.name,
                    segment.start_rollout,
                    logged,
                )


def data_lost(trained: list[str], expected: list[str]) -> int:
    """Positions where the resumed run trained another prompt than the uninterrupted one (or none)."""
    return sum(a != b for a, b in zip(trained, expected, strict=False)) + abs(len(trained) - len(expected))


def _flag(argv: list[str], name: str, default: str | None = None) -> str | None:
    return argv[argv.index(name) + 1] if name in argv else default


def uninterrupted_prompts(argv: list[str], num_rollout: int, batch: int) -> list[str]:
    """The labels an uninterrupted run trains, rollout by rollout, from the data file itself (not slime's data source).

    The default rollout function takes ``batch`` prompts per rollout, in file order, epoch after epoch; with
    ``--rollout-shuffle`` each epoch is slime's permutation: ``random.seed(rollout_seed + epoch)`` then
    ``random.shuffle(list(range(num_prompts)))`` (``--rollout-seed`` defaults to 42). No prompt filter applies
    (no ``--rollout-max-prompt-len``).
    """
    assert "--rollout-max-prompt-len" not in argv, "a prompt-length filter would drop prompts this does not drop"
    label_key = _flag(argv, "--label-key")
    rows = [json.loads(line) for line in Path(_flag(argv, "--prompt-data")).read_text().splitlines() if line.strip()]
    labels = [str(row[label_key]) for row in rows]
    seed = int(_flag(argv, "--rollout-seed", "42"))
    trained: list[str] = []
    epoch = 0
    while len(trained) < num_rollout * batch:
        order = list(range(len(labels)))
        if "--rollout-shuffle" in argv:
            random.Random(seed + epoch).shuffle(order)  # as random.seed(...); random.shuffle(...)
        trained.extend(labels[i] for i in order)
        epoch += 1
    return trained[: num_rollout * batch]
