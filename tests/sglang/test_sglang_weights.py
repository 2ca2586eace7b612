"""Weight updates into the running engines (over a gloo group, from disk, from tensors) change what they generate
to exactly what HF transformers generates with the new weights."""

import os
import sys
import time
from pathlib import Path

import pytest
import ray
import torch

from slime_sglang import weight_updates
from slime_sglang.processes import stat_fields

sys.path.insert(0, str(Path(__file__).parent))
from engine_checks import PROMPTS, check_engine_matches, hf_named_tensors, perturbed  # noqa: E402

pytestmark = pytest.mark.slow


def test_distributed_update_then_disk_update(engine, hf_model, hf_greedy, tiny_model: Path, tmp_path: Path) -> None:
    new_model = perturbed(hf_model, seed=1)
    assert hf_greedy(new_model, PROMPTS[0], 8)[0] != hf_greedy(hf_model, PROMPTS[0], 8)[0]  # the test can tell

    sender = engine.distributed_sender()
    sender.connect()
    try:
        engine.update_weights_from_distributed(sender, hf_named_tensors(new_model), weight_version="1")
        samples = check_engine_matches(engine, new_model, hf_greedy)
        assert {tuple(s.weight_versions) for s in samples} == {("1",)}
        assert {weight_updates.weight_version(url) for url in engine.engine_urls} == {"1"}
    finally:
        sender.close()

    disk_model = perturbed(hf_model, seed=2)
    disk_model.save_pretrained(tmp_path / "weights_v3")
    try:
        engine.update_weights_from_disk(str(tmp_path / "weights_v3"), weight_version="3")
        check_engine_matches(engine, disk_model, hf_greedy)
    finally:
        engine.update_weights_from_disk(str(tiny_model), weight_version="4")
    check_engine_matches(engine, hf_model, hf_greedy)


def test_tensor_update(engine, hf_model, hf_greedy, tiny_model: Path) -> None:
    new_model = perturbed(hf_model, seed=3)
    try:
        engine.update_weights_from_tensors(hf_named_tensors(new_model), weight_version="5")
        check_engine_matches(engine, new_model, hf_greedy)
    finally:
        engine.update_weights_from_disk(str(tiny_model), weight_version="6")


def close_senders() -> None:
    while weight_updates._senders:
        weight_updates._senders.popitem()[1].close()


def test_receiver_sends_through_shared_memory_to_engines_on_its_node(engine, hf_model, hf_greedy, tiny_model) -> None:
    receiver = engine.weight_receiver()
    assert receiver.engine_nodes == [ray.get_runtime_context().get_node_id()] * 2  # read in the engine actors
    assert receiver.engine_gpus == [[], []]  # CPU engines hold no GPU
    assert receiver.transports() == {"shared_memory": [0, 1]}
    try:
        for version, seed in (("7", 4), ("8", 5)):  # the second update reuses the first one's buffer
            new_model = perturbed(hf_model, seed=seed)
            receiver.update_weights(hf_named_tensors(new_model), version)
            check_engine_matches(engine, new_model, hf_greedy)
        assert isinstance(weight_updates._senders["shared_memory"], weight_updates.SharedMemoryWeightSender)
    finally:
        close_senders()
        engine.update_weights_from_disk(str(tiny_model), weight_version="9")


def test_receiver_chooses_the_transport_per_engine_by_node(engine, hf_model, hf_greedy, tiny_model) -> None:
    receiver = engine.weight_receiver()
    receiver.engine_nodes[1] = "another-node"
    assert receiver.transports() == {"shared_memory": [0], "broadcast": [1]}
    new_model = perturbed(hf_model, seed=6)
    try:
        receiver.update_weights((pair for pair in hf_named_tensors(new_model)), "10")  # read by both transports
        assert isinstance(weight_updates._senders["broadcast"], weight_updates.DistributedWeightSender)
        assert weight_updates._senders["broadcast"].engine_urls == [engine.engine_urls[1]]
        check_engine_matches(engine, new_model, hf_greedy)
    finally:
        close_senders()
        engine.update_weights_from_disk(str(tiny_model), weight_version="11")


def test_shared_memory_buffer_holds_aligned_copies_and_is_reused() -> None:
    sender = weight_updates.SharedMemoryWeightSender(["http://127.0.0.1:1"])
    bucket = [
        ("a", torch.arange(3, dtype=torch.float32)),
        ("b", torch.arange(5, dtype=torch.bfloat16).reshape(5, 1)),
        ("empty", torch.zeros(0, 4)),
        ("c", torch.arange(4, dtype=torch.int64).reshape(2, 2).t()),  # not contiguous
    ]
    views = sender._copy_into_buffer(bucket)
    assert sender.buffer.is_shared()
    for (name, tensor), (view_name, view) in zip(bucket, views, strict=True):
        assert view_name == name and view.dtype == tensor.dtype and torch.equal(view, tensor)
        assert view.untyped_storage().data_ptr() == sender.buffer.untyped_storage().data_ptr()
        assert view.data_ptr() % weight_updates.SharedMemoryWeightSender.ALIGNMENT == 0
    buffer = sender.buffer
    sender._copy_into_buffer(bucket[:1])
    assert sender.buffer is buffer  # a smaller bucket fits
    sender._copy_into_buffer([("big", torch.ones(1000))])
    assert sender.buffer is not buffer and sender.buffer.numel() >= 4000


def test_memory_release_on_cpu_only_flushes_and_keeps_the_servers(engine) -> None:
    # The colocated loop calls these on CPU too; /release_memory_occupation would kill a CPU server.
    engine.release_memory()
    engine.resume_memory(["weights"])
    engine.resume_memory(["kv_cache"])
    assert engine.health() == [True, True]


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of the live processes among ``pids`` (/proc/<pid>/stat fields 14 and 15)."""
    ticks = os.sysconf("SC_CLK_TCK")
    return sum((int(f[11]) + int(f[12])) / ticks for f in map(stat_fields, pids) if f is not None)


def test_paused_engines_wait_instead_of_spinning(engine, hf_model, hf_greedy) -> None:
    # Every weight update pauses the engines; a scheduler spinning meanwhile took a core from the sender.
    pids = engine.pids()
    weight_updates.pause_generation(engine.engine_urls)
    try:
        time.sleep(0.5)
        before = cpu_seconds(pids)
        time.sleep(2.0)
        used = cpu_seconds(pids) - before
    finally:
        weight_updates.continue_generation(engine.engine_urls)
    assert used < 0.5, f"two paused engines used {used:.2f} CPU-seconds in 2 s"
    check_engine_matches(engine, hf_model, hf_greedy)
