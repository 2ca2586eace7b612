import json

import pytest

from slime_testkit.tiny_model import build_tiny_model


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A tiny model and eight `i+1=` prompts with their labels, built once per test module."""
    root = tmp_path_factory.mktemp("loop")
    model = build_tiny_model(root / "model")
    data = root / "train.jsonl"
    data.write_text("".join(json.dumps({"prompt": f"{i}+1=", "label": str(i + 1)}) + "\n" for i in range(8)))
    return root, model, data
