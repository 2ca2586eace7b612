"""Run by test_faults.py in its own process: a Megatron-core (CPU) trainer saves rollout 0, trains rollout 1, then
saves it on a "full disk" (RLIMIT_FSIZE: every write past 64 KiB fails with EFBIG, as ENOSPC would), then a fresh
trainer resumes with --load. Prints one JSON line with what happened; the test judges it.

A process of its own because the file-size limit and megatron-core's process group must not touch pytest's process.
"""

import json
import resource
import signal
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parents[1] / "megatron"))  # the megatron tests' helpers


def main(root: Path) -> None:
    from slime_megatron import cpu_compat

    cpu_compat.enable()
    import megatron_helpers as helpers

    helpers.init_single_process_world()
    model = helpers.build_random_model(root / "model", "qwen2")
    ckpt = root / "ckpt"
    trainer = helpers.make_trainer(helpers.make_args(model, "--save", str(ckpt)))
    batch = helpers.make_batch(vocab_size=600)
    helpers.train_rollouts(trainer, batch, range(0, 1))
    trainer.save(0)
    saved = {name: tensor.clone() for name, tensor in trainer.hf_state_dict().items()}
    helpers.train_rollouts(trainer, batch, range(1, 2))

    # Past the limit a write fails with EFBIG instead of the process getting SIGXFSZ (which would kill it).
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, hard))
    error = None
    try:
        trainer.save(1)
    except BaseException as exc:  # what a user would see, whatever it is: the type and the message
        error = f"{type(exc).__name__}: {exc}"
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    pointer = (ckpt / "latest_checkpointed_iteration.txt").read_text().strip()
    entries = sorted(p.name for p in ckpt.iterdir())

    resumed = helpers.make_trainer(helpers.make_args(model, "--load", str(ckpt), "--save", str(ckpt)))
    loaded = resumed.hf_state_dict()
    same = all(torch.equal(loaded[name], tensor) for name, tensor in saved.items())
    helpers.train_rollouts(resumed, batch, range(1, 2))
    resumed.save(1)  # the disk has room again: the same rollout saves over what the failed save left
    result = {
        "error": error,
        "pointer_after_failure": pointer,
        "entries_after_failure": entries,
        "resumed_start": resumed.start_rollout_id,
        "resumed_weights_equal_saved": same,
        "pointer_after_retry": (ckpt / "latest_checkpointed_iteration.txt").read_text().strip(),
        "entries_after_retry": sorted(p.name for p in ckpt.iterdir()),
    }
    print("RESULT " + json.dumps(result), flush=True)
    helpers.destroy_world()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
