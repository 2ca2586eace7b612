"""The routers' load-balancing losses of one optimizer step, logged as ``train/<name>`` under Megatron's names.

Megatron's routers add their auxiliary loss to the gradients themselves (``--moe-router-load-balancing-type``,
``--moe-aux-loss-coeff``, ``--moe-z-loss-coeff``) and record its unscaled value per layer in megatron-core's metrics
tracker; this reads the step's values back as Megatron-LM's training loop reports them: averaged over micro-batches,
MoE layers and data-parallel ranks. Upstream slime logs none of them.
"""

from megatron.core.transformer import TransformerConfig
from megatron.core.transformer.moe.moe_logging import get_moe_metrics_tracker

# --moe-router-load-balancing-type -> the name its router records the loss under.
_LOSS_NAMES = {
    "aux_loss": "load_balancing_loss",
    "seq_aux_loss": "seq_load_balancing_loss",
    "global_aux_loss": "global_load_balancing_loss",
}


def tracked_losses(config: TransformerConfig) -> list[str]:
    """The loss names this configuration's routers record (a loss with coefficient 0 is neither applied nor
    recorded)."""
    if not config.num_moe_experts:
        return []
    types, coeffs = config.moe_router_load_balancing_type, config.moe_aux_loss_coeff
    if isinstance(types, str):
        types, coeffs = [types], [coeffs]
    names = [_LOSS_NAMES[kind] for kind, coeff in zip(types, coeffs, strict=True) if coeff > 0 and kind in _LOSS_NAMES]
    if config.moe_z_loss_coeff:
        names.append("z_loss")
    return names


def step_losses(config: TransformerConfig, num_micro_batches: int) -> dict[str, float]:
    """This step's recorded losses, then clears them; collective over every rank (reduced over the pipeline and
    data-parallel groups)."""
    names = tracked_losses(config)
    if not names:
        return {}
    losses: dict = {}
    get_moe_metrics_tracker().report(
        loss_scale=1 / num_micro_batches,
        iteration=0,  # only read by the writers, of which there are none here
        # Every stage reduces the same names, also one without MoE layers.
        force_initialize=True,
        track_names=names,
        num_layers=config.num_layers,
        moe_layer_freq=config.moe_layer_freq,
        total_loss_dict=losses,
    )
    return {name: float(value) for name, value in losses.items()}
