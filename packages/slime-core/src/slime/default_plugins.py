"""slime-core's own plugin: its defaults register through the same hooks as any third-party plugin.

Each area of core keeps its registrations next to its code; this module only gathers them for the entry point.
"""

from slime.data.plugin import slime_register_data_sources  # noqa: F401
from slime.metrics.plugin import slime_register_metric_sinks  # noqa: F401
from slime.rl.plugin import (  # noqa: F401
    slime_register_advantage_estimators,
    slime_register_importance_weights,
    slime_register_policy_losses,
)
from slime.rollout.plugin import (  # noqa: F401
    slime_register_generate_functions,
    slime_register_rollout_functions,
    slime_register_sample_filters,
)
