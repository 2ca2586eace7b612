"""The ``tensorboard`` metric sink (``--use-tensorboard``): scalars against each metric's own step key.

The directory is ``TENSORBOARD_DIR`` when set (as in slime), else
``<output-dir>/tensorboard/<--tb-project-name or slime>/<--tb-experiment-name or the start time>``. The primary
records the experiment name in ``args``, so actors that log write their event files into the same directory.
"""

import argparse
import datetime
import logging
import os
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)


def tensorboard_dir(args: argparse.Namespace) -> Path:
    if os.environ.get("TENSORBOARD_DIR"):
        return Path(os.environ["TENSORBOARD_DIR"])
    return Path(args.output_dir) / "tensorboard" / (args.tb_project_name or "slime") / args.tb_experiment_name


class TensorboardSink:
    @classmethod
    def enabled(cls, args: argparse.Namespace) -> bool:
        return bool(args.use_tensorboard)

    def __init__(self, args: argparse.Namespace, *, primary: bool = True, label: str = "driver") -> None:
        from torch.utils.tensorboard import SummaryWriter

        if args.tb_experiment_name is None:
            if not primary:
                raise RuntimeError("no TensorBoard experiment to join: the driver's init_metrics(args) names it")
            args.tb_experiment_name = datetime.datetime.now().strftime("%Y%m%d_%H%M%S")
        self.log_dir = tensorboard_dir(args)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.writer = SummaryWriter(str(self.log_dir), flush_secs=30)
        logger.info("TensorBoard (%s): %s", label, self.log_dir)

    def log(self, metrics: dict[str, Any], step_key: str) -> None:
        step = metrics[step_key]
        for key, value in metrics.items():
            if key != step_key:
                self.writer.add_scalar(key, value, global_step=step)

    def finish(self) -> None:
        self.writer.close()
