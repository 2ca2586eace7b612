import json

import pytest

from slime_testkit.tiny_model import build_tiny_model


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    return build_tiny_model(tmp_path_factory.mktemp("tiny-model") / "model")


@pytest.fixture(scope="session")
def arithmetic_data(tmp_path_factory):
    """dapo-style rows with string prompts: 'a+b=' and the sum as label."""
    root = tmp_path_factory.mktemp("data")
    paths = {}
    for name, count in (("train", 12), ("eval_a", 3), ("eval_b", 2)):
        path = root / f"{name}.jsonl"
        rows = [{"prompt": f"{i}+{i + 1}=", "label": str(2 * i + 1)} for i in range(count)]
        path.write_text("".join(json.dumps(row) + "\n" for row in rows))
        paths[name] = str(path)
    return paths
