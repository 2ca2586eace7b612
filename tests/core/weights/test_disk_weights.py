"""The disk weight transport's files: an atomic HF checkpoint per update, and only the latest update kept."""

from pathlib import Path

import torch
from safetensors.torch import load_file

from slime.weights.disk import remove_earlier_updates, write_hf_checkpoint


def test_checkpoint_has_the_tensors_and_the_source_files(tmp_path: Path) -> None:
    source = tmp_path / "model"
    source.mkdir()
    (source / "config.json").write_text("{}")
    (source / "model.safetensors").write_bytes(b"old weights, not copied")
    embedding = torch.arange(6.0).reshape(3, 2)
    out = write_hf_checkpoint({"embed": embedding, "lm_head": embedding}, source, tmp_path / "weights" / "weight_v1")
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.safetensors"]
    assert list(load_file(out / "model.safetensors")) == ["embed"]  # tied: stored once
    assert torch.equal(load_file(out / "model.safetensors")["embed"], embedding)
    assert [p.name for p in (tmp_path / "weights").iterdir()] == ["weight_v1"]  # no staging directory left


def test_only_the_latest_update_and_foreign_files_stay(tmp_path: Path) -> None:
    for name in ("weight_v1", "weight_v2", "weight_v10", "weight_vbest", "notes"):
        (tmp_path / name).mkdir()
    remove_earlier_updates(tmp_path / "weight_v10")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes", "weight_v10", "weight_vbest"]
