"""slime-core's own plugin: its defaults register through the same hooks as any third-party plugin.

Each area of core keeps its registrations next to its code; this module only gathers them for the entry point.
"""
