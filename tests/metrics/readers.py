"""Read back what each metric sink wrote: ``metrics.jsonl``, W&B offline ``.wandb`` files, TensorBoard event files.

W&B 0.31 has no public reader of offline runs, so ``read_wandb`` parses the ``.wandb`` file itself: a LevelDB-log
framed stream (7-byte ``:W&B`` header; 32 KiB blocks; records with a 7-byte header: CRC32, length, type
FULL/FIRST/MIDDLE/LAST) of ``wandb.proto.wandb_internal_pb2.Record`` messages, decoded with W&B's own classes.
W&B's service process may still be writing the file when ``run.finish()`` returns, so the reader waits for the
run's ``exit`` record, which W&B writes last.
"""

import json
import struct
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

WANDB_HEADER = b":W&B"
WANDB_HEADER_LEN = 7
BLOCK_LEN = 32 * 1024
RECORD_HEADER_LEN = 7
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """One dict per line of a ``metrics.jsonl`` (or of ``<dir>/metrics.jsonl``)."""
    path = path / "metrics.jsonl" if path.is_dir() else path
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


@dataclass
class WandbRun:
    run_id: str
    group: str
    name: str
    config: dict[str, Any]
    history: list[dict[str, Any]]  # one dict per run.log call, W&B's own keys (_step, _runtime, ...) left out
    step_metrics: dict[str, str | None] = field(default_factory=dict)  # metric or glob -> its step metric
    summary: dict[str, Any] = field(default_factory=dict)


def _wandb_records(path: Path) -> list[bytes]:
    data = path.read_bytes()
    if not data.startswith(WANDB_HEADER):
        raise ValueError(f"{path} is not a .wandb file")
    records, pending, pos = [], b"", WANDB_HEADER_LEN
    while pos + RECORD_HEADER_LEN <= len(data):
        left_in_block = BLOCK_LEN - pos % BLOCK_LEN
        if left_in_block < RECORD_HEADER_LEN:  # a block's tail too short for a header is zero padding
            pos += left_in_block
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + RECORD_HEADER_LEN])
        chunk = data[pos + RECORD_HEADER_LEN : pos + RECORD_HEADER_LEN + length]
        pos += RECORD_HEADER_LEN + length
        if kind == FULL:
            records.append(chunk)
        elif kind == FIRST:
            pending = chunk
        elif kind == MIDDLE:
            pending += chunk
        elif kind == LAST:
            records.append(pending + chunk)
            pending = b""
    return records


def _item_key(item: Any) -> str:
    return item.key or "/".join(item.nested_key)


def _finished_records(path: Path, timeout: float) -> list:
    from wandb.proto import wandb_internal_pb2

    deadline = time.monotonic() + timeout
    while True:
        records = []
        for raw in _wandb_records(path):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(raw)
            records.append(record)
        if any(record.WhichOneof("record_type") == "exit" for record in records):
            return records
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} has no exit record after {timeout} s: the run did not finish")
        time.sleep(0.1)


def read_wandb(path: Path, timeout: float = 30.0) -> WandbRun:
    """Parse one finished offline run: a ``.wandb`` file, or a directory holding exactly one."""
    if path.is_dir():
        files = sorted(path.rglob("*.wandb"))
        if len(files) != 1:
            raise ValueError(f"expected one .wandb file under {path}, found {[str(f) for f in files]}")
        path = files[0]
    run = WandbRun(run_id="", group="", name="", config={}, history=[])
    for record in _finished_records(path, timeout):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            run.run_id, run.group, run.name = record.run.run_id, record.run.run_group, record.run.display_name
            for item in record.run.config.update:
                run.config[_item_key(item)] = json.loads(item.value_json)
        elif kind == "config":
            for item in record.config.update:
                run.config[_item_key(item)] = json.loads(item.value_json)
        elif kind == "metric":
            name = record.metric.name or record.metric.glob_name
            run.step_metrics[name] = record.metric.step_metric or None
        elif kind == "history":
            row = {_item_key(item): json.loads(item.value_json) for item in record.history.item}
            run.history.append({key: value for key, value in row.items() if not key.startswith("_")})
        elif kind == "summary":
            for item in record.summary.update:
                run.summary[_item_key(item)] = json.loads(item.value_json)
    return run


def read_tensorboard(log_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar tag in a TensorBoard directory -> its (step, value) points, in write order."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(log_dir), size_guidance={"scalars": 0})  # 0 = keep every point
    accumulator.Reload()
    return {
        tag: [(event.step, event.value) for event in accumulator.Scalars(tag)] for tag in accumulator.Tags()["scalars"]
    }
