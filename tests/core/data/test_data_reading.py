"""Reading .jsonl and .parquet prompt files: rows, slicing, and every error with its exact message."""

import re

import pytest

from slime.data.reading import Row, parse_path_spec, read_rows
from slime.errors import DataError


def error_of(spec: str, flag: str = "--prompt-data") -> str:
    with pytest.raises(DataError) as info:
        read_rows(spec, flag)
    return str(info.value)


# --- path specs and slicing ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("train.jsonl", ("train.jsonl", None)),
        ("train.jsonl@[1:3]", ("train.jsonl", slice(1, 3))),
        ("train.jsonl@[:5]", ("train.jsonl", slice(None, 5))),
        ("train.jsonl@[-2:]", ("train.jsonl", slice(-2, None))),
        ("train.jsonl@[-3:-1]", ("train.jsonl", slice(-3, -1))),
        ("train.jsonl@[:]", ("train.jsonl", slice(None, None))),
        ("/abs/dir/train.parquet@[10:20]", ("/abs/dir/train.parquet", slice(10, 20))),
    ],
)
def test_parse_path_spec(spec, expected):
    assert parse_path_spec(spec) == expected


@pytest.mark.parametrize("bad", ["train.jsonl@[a:b]", "train.jsonl@[1]", "train.jsonl@[1:2:3]", "train.jsonl@[-:2]"])
def test_a_bad_slice_is_an_error(bad, data_dir):
    assert error_of(bad) == (
        f"bad slice in '{bad}': expected FILE@[START:END] with optional integers START and END, "
        "e.g. train.jsonl@[0:1000] or train.jsonl@[-100:]"
    )


def test_a_file_whose_name_contains_at_bracket_is_still_a_file(data_dir):
    (data_dir / "odd@[x].jsonl").write_text('{"input": "hi"}\n')
    assert parse_path_spec("data/odd@[x].jsonl") == ("data/odd@[x].jsonl", None)
    assert [row.data for row in read_rows("data/odd@[x].jsonl")] == [{"input": "hi"}]


def five_rows(write_jsonl) -> str:
    return write_jsonl("train.jsonl", [{"input": f"p{i}"} for i in range(5)])


@pytest.mark.parametrize(
    ("suffix", "expected"),
    [
        ("", ["p0", "p1", "p2", "p3", "p4"]),
        ("@[1:3]", ["p1", "p2"]),
        ("@[:2]", ["p0", "p1"]),
        ("@[3:]", ["p3", "p4"]),
        ("@[-2:]", ["p3", "p4"]),
        ("@[-4:-2]", ["p1", "p2"]),
        ("@[2:100]", ["p2", "p3", "p4"]),
    ],
)
def test_slicing_jsonl_rows(write_jsonl, suffix, expected):
    path = five_rows(write_jsonl)
    assert [row.data["input"] for row in read_rows(path + suffix)] == expected


@pytest.mark.parametrize("suffix", ["@[5:]", "@[3:3]", "@[4:1]", "@[-10:-6]"])
def test_a_slice_that_selects_nothing_is_an_error(write_jsonl, suffix):
    path = five_rows(write_jsonl)
    assert error_of(path + suffix) == f"data/train.jsonl{suffix}: the slice selects no rows (the file has 5)"


def test_lines_outside_the_slice_are_not_parsed(write_jsonl):
    path = write_jsonl("train.jsonl", [{"input": "a"}, {"input": "b"}, "{not json", b"\xff\xfe"])
    assert [row.data["input"] for row in read_rows(path + "@[:2]")] == ["a", "b"]


# --- jsonl ----------------------------------------------------------------------------------------------------


def test_jsonl_rows_name_their_line(write_jsonl):
    path = write_jsonl("train.jsonl", [{"input": "a"}, "", "   ", {"input": "b", "label": 1}])
    assert read_rows(path) == [
        Row("data/train.jsonl line 1", {"input": "a"}),
        Row("data/train.jsonl line 4", {"input": "b", "label": 1}),
    ]


def test_jsonl_with_crlf_line_ends_and_a_byte_order_mark(data_dir):
    (data_dir / "win.jsonl").write_bytes(b'\xef\xbb\xbf{"input": "a"}\r\n{"input": "b"}\r\n')
    assert [row.data for row in read_rows("data/win.jsonl")] == [{"input": "a"}, {"input": "b"}]


def test_jsonl_without_a_final_newline(data_dir):
    (data_dir / "train.jsonl").write_text('{"input": "a"}\n{"input": "b"}')
    assert [row.where for row in read_rows("data/train.jsonl")] == [
        "data/train.jsonl line 1",
        "data/train.jsonl line 2",
    ]


def test_invalid_json_names_file_line_and_column(write_jsonl):
    path = write_jsonl("train.jsonl", [{"input": "a"}, "", '{"input": "b" "label": 1}'])
    assert error_of(path) == "data/train.jsonl line 3: invalid JSON (Expecting ',' delimiter: column 15)"


def test_a_truncated_line_is_invalid_json(write_jsonl):
    path = write_jsonl("train.jsonl", ['{"input": "a'])
    assert error_of(path) == "data/train.jsonl line 1: invalid JSON (Unterminated string starting at: column 11)"


def test_a_line_that_is_not_utf8(write_jsonl):
    path = write_jsonl("train.jsonl", [{"input": "a"}, b'{"input": "caf\xe9"}'])
    assert error_of(path) == "data/train.jsonl line 2: not valid UTF-8 (byte 0xe9 at column 15)"


@pytest.mark.parametrize(
    ("line", "kind"),
    [('["a", "b"]', "array"), ('"just text"', "string"), ("42", "number"), ("null", "null"), ("true", "boolean")],
)
def test_a_line_that_is_not_an_object(write_jsonl, line, kind):
    path = write_jsonl("train.jsonl", [{"input": "a"}, line])
    assert error_of(path) == f"data/train.jsonl line 2: expected a JSON object, got {kind}"


@pytest.mark.parametrize("content", [b"", b"\n\n  \n"])
def test_an_empty_jsonl_file(data_dir, content):
    (data_dir / "train.jsonl").write_bytes(content)
    assert error_of("data/train.jsonl") == "data/train.jsonl: empty file (no rows)"


# --- files ----------------------------------------------------------------------------------------------------


def test_a_missing_file_names_the_flag(data_dir):
    assert error_of("data/nope.jsonl") == "data/nope.jsonl: no such file (from --prompt-data)"
    assert error_of("data/nope.jsonl@[0:10]", "--eval-prompt-data") == (
        "data/nope.jsonl: no such file (from --eval-prompt-data)"
    )


def test_a_directory_is_not_a_file(data_dir):
    assert error_of("data") == "data: not a file (from --prompt-data); expected a .jsonl or .parquet file"


@pytest.mark.parametrize("name", ["train.json", "train.csv", "train"])
def test_an_unsupported_extension(data_dir, name):
    (data_dir / name).write_text('{"input": "a"}\n')
    assert error_of(f"data/{name}") == (
        f"data/{name}: unsupported prompt data format (from --prompt-data); expected a .jsonl or .parquet file"
    )


# --- parquet --------------------------------------------------------------------------------------------------


def test_parquet_rows_are_named_from_zero(write_parquet, gsm8k_rows):
    path = write_parquet("train.parquet", gsm8k_rows)
    rows = read_rows(path)
    assert [row.where for row in rows] == ["data/train.parquet row 0", "data/train.parquet row 1"]
    assert [row.data for row in rows] == gsm8k_rows


def test_slicing_parquet_rows_keeps_their_numbers(write_parquet):
    path = write_parquet("train.parquet", [{"input": f"p{i}"} for i in range(6)])
    rows = read_rows(path + "@[-3:-1]")
    assert [(row.where, row.data["input"]) for row in rows] == [
        ("data/train.parquet row 3", "p3"),
        ("data/train.parquet row 4", "p4"),
    ]
    assert error_of(path + "@[6:]") == "data/train.parquet@[6:]: the slice selects no rows (the file has 6)"


def test_an_empty_parquet_file(data_dir):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"input": pa.array([], pa.string())}), data_dir / "train.parquet")
    assert error_of("data/train.parquet") == "data/train.parquet: empty file (no rows)"


def test_a_file_that_is_not_parquet(data_dir):
    (data_dir / "train.parquet").write_text('{"input": "a"}\n')
    message = error_of("data/train.parquet")
    assert re.fullmatch(r"data/train\.parquet: not a readable parquet file \(.+\)", message), message
    assert "\n" not in message
