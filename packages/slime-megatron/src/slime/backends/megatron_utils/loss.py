"""slime's ``slime.backends.megatron_utils.loss``: the helper slime's custom losses call, over this backend.

A loss ``f(args, batch, logits, sum_of_sample_mean)`` (``--loss-type custom_loss --custom-loss-function-path``)
imports ``get_log_probs_and_entropy`` from here, as in slime; it is ``slime_megatron.slime_loss``'s.
"""

from slime_megatron.slime_loss import get_log_probs_and_entropy

__all__ = ["get_log_probs_and_entropy"]
