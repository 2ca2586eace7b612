"""Reading prompt data files into rows: ``.jsonl`` and ``.parquet``, with slime's ``file@[start:end]`` row slicing.

A row is one JSON object (a non-blank line of a ``.jsonl`` file) or one parquet row. Each row carries where it came
from, so every later error can name the file and the line (``.jsonl``, counted from 1 as editors do) or the row
(``.parquet``, counted from 0 as pandas and pyarrow do).
"""

import codecs
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from slime.errors import DataError

# "file.jsonl@[start:end]": either bound may be left out or negative, as in a Python slice.
_SLICE_RE = re.compile(r"^(?P<path>.+)@\[(?P<start>-?\d+)?:(?P<end>-?\d+)?\]$")


@dataclass(frozen=True)
class Row:
    where: str  # "data/train.jsonl line 3" or "data/train.parquet row 2", to start error messages with
    data: dict[str, Any]


def parse_path_spec(spec: str) -> tuple[str, slice | None]:
    """Split ``file.jsonl@[start:end]`` into the path and the row slice (``None`` when the spec has no slice)."""
    match = _SLICE_RE.match(spec)
    if match:
        start = int(match["start"]) if match["start"] is not None else None
        end = int(match["end"]) if match["end"] is not None else None
        return match["path"], slice(start, end)
    # A name that merely contains "@[" is still a file when it exists; otherwise it is a mistyped slice.
    if "@[" in spec and not Path(spec).exists():
        raise DataError(
            f"bad slice in '{spec}': expected FILE@[START:END] with optional integers START and END, "
            "e.g. train.jsonl@[0:1000] or train.jsonl@[-100:]"
        )
    return spec, None


def read_rows(spec: str, flag: str = "--prompt-data") -> list[Row]:
    """The rows of a ``.jsonl`` or ``.parquet`` file, sliced by ``@[start:end]`` when the spec has one.

    ``flag`` is the command-line flag the spec came from, named in the error for a missing file.
    """
    path, row_slice = parse_path_spec(spec)
    file = Path(path)
    if not file.exists():
        raise DataError(f"{path}: no such file (from {flag})")
    if not file.is_file():
        raise DataError(f"{path}: not a file (from {flag}); expected a .jsonl or .parquet file")
    suffix = file.suffix.lower()
    if suffix == ".jsonl":
        return _read_jsonl(path, spec, row_slice)
    if suffix == ".parquet":
        return _read_parquet(path, spec, row_slice)
    raise DataError(f"{path}: unsupported prompt data format (from {flag}); expected a .jsonl or .parquet file")


def describe_type(value: Any) -> str:
    """A value's type in JSON's words, for messages about data that came from JSON or parquet."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array" if value else "empty array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def _select(items: list, row_slice: slice | None, spec: str) -> list:
    if row_slice is None:
        return items
    chosen = items[row_slice]
    if not chosen:
        raise DataError(f"{spec}: the slice selects no rows (the file has {len(items)})")
    return chosen


def _read_jsonl(path: str, spec: str, row_slice: slice | None) -> list[Row]:
    content = Path(path).read_bytes()
    if content.startswith(codecs.BOM_UTF8):  # some editors on Windows write one; it is not part of the JSON
        content = content[len(codecs.BOM_UTF8) :]
    # Split on "\n" only, so line numbers match an editor's; "\r" of CRLF files is whitespace to JSON.
    lines = [(number, line) for number, line in enumerate(content.split(b"\n"), start=1) if line.strip()]
    if not lines:
        raise DataError(f"{path}: empty file (no rows)")
    # Slice before parsing, so lines outside the slice are never decoded.
    return [_parse_line(path, number, line) for number, line in _select(lines, row_slice, spec)]


def _parse_line(path: str, number: int, line: bytes) -> Row:
    where = f"{path} line {number}"
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"{where}: not valid UTF-8 (byte 0x{line[exc.start]:02x} at column {exc.start + 1})") from None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(f"{where}: invalid JSON ({exc.msg}: column {exc.colno})") from None
    if not isinstance(value, dict):
        raise DataError(f"{where}: expected a JSON object, got {describe_type(value)}")
    return Row(where, value)


def _read_parquet(path: str, spec: str, row_slice: slice | None) -> list[Row]:
    # Imported here: pyarrow is only needed by parquet users.
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as exc:
        message = " ".join(str(exc).split())
        raise DataError(f"{path}: not a readable parquet file ({message})") from None
    if table.num_rows == 0:
        raise DataError(f"{path}: empty file (no rows)")
    indices = _select(range(table.num_rows), row_slice, spec)  # a range: slicing it keeps it contiguous
    values = table.slice(indices.start, len(indices)).to_pylist()
    return [Row(f"{path} row {index}", value) for index, value in zip(indices, values, strict=True)]
