"""slime-tools-calculator's entry module: registers its tool with slime and nothing else."""

from slime.hookspecs import hookimpl
from slime_tools_calculator.calculator import CALCULATOR


@hookimpl
def slime_register_tools(register) -> None:
    register(CALCULATOR.name, CALCULATOR)
