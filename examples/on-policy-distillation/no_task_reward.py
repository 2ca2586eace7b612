"""Pure distillation: no task reward (the signal is OPD's reverse KL to the teacher). ``opd.yaml`` scores eval with
the math reward instead, per dataset."""

from typing import Any


async def zero(args: Any, sample: Any) -> float:
    return 0.0
