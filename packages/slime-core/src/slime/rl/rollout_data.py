"""``--rollout-data-postprocess-path``: slime's hook on a train rank's rollout data, after advantages, before training.

slime calls ``f(args, rollout_id, rollout_data)`` where ``rollout_data`` holds per-sample lists of this rank's samples
under slime's keys (``tokens``, ``response_lengths``, ``total_lengths``, ``loss_masks``, ``rewards``, ``advantages``,
and the log-probs this rollout computed: ``log_probs``, ``ref_log_probs``, ``rollout_log_probs``). The function may
change them in place (a loss mask, say); each train backend then trains on ``loss_masks`` and ``advantages`` as they
are after the call.
"""

import argparse
from typing import Any

from slime.plugins import load_object


def postprocess_rollout_data(args: argparse.Namespace, rollout_id: int, rollout_data: dict[str, Any]) -> None:
    if args.rollout_data_postprocess_path:
        load_object(args.rollout_data_postprocess_path, "--rollout-data-postprocess-path")(
            args, rollout_id, rollout_data
        )
