"""A layout the Ray cluster cannot hold is one line naming the flags, before anything is placed or started (the
session's Ray runtime declares 8 CPUs: one bundle each on a machine without GPUs)."""

import pytest

from slime.config.arguments import parse_args
from slime.errors import SlimeError
from slime.ray.placement import create_placement


def test_more_devices_than_the_cluster_has(ray_runtime, tmp_path) -> None:
    args = parse_args(["--actor-num-gpus-per-node", "6", "--rollout-num-gpus", "4", "--output-dir", str(tmp_path)])
    with pytest.raises(SlimeError) as error:
        create_placement(args, timeout_s=1)
    assert str(error.value) == (
        "--actor-num-nodes x --actor-num-gpus-per-node (1 x 6) and --rollout-num-gpus (4) need 10 CPU, "
        "and this Ray cluster has 8"
    )


def test_an_engine_wider_than_a_node(ray_runtime, tmp_path) -> None:
    args = parse_args(
        ["--debug-rollout-only", "--rollout-num-gpus", "9", "--rollout-num-gpus-per-engine", "9"]
        + ["--num-gpus-per-node", "16", "--output-dir", str(tmp_path)]  # the flag allows it; this cluster does not
    )
    with pytest.raises(
        SlimeError, match=r"^--rollout-num-gpus-per-engine 9: an engine runs on one node, .* has 8 CPU$"
    ):
        create_placement(args, timeout_s=1)
