"""Registers slime-core's default data source, the way any plugin registers one."""

from slime.data.data_source import RolloutDataSource
from slime.hookspecs import hookimpl


@hookimpl
def slime_register_data_sources(register) -> None:
    register("default", RolloutDataSource)
