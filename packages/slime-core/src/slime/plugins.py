"""The plugin manager, the registries built from its ``register`` hooks, and dotted-path loading.

Every plugin, slime-core's own defaults included, is found through the ``slime`` entry-point group and registers
through the same hooks, so a built-in and a third-party plugin are indistinguishable.
"""

import importlib
import importlib.metadata
from dataclasses import dataclass, field
from typing import Any

import pluggy

from slime import hookspecs
from slime.errors import PluginError

ENTRY_POINT_GROUP = "slime"


@dataclass(frozen=True)
class RegistryKind:
    hook: str  # name of the registration hook
    noun: str  # what one entry is called in messages
    flag: str  # the command-line flag that selects one by name


REGISTRY_KINDS: dict[str, RegistryKind] = {
    "train_backends": RegistryKind("slime_register_train_backends", "train backend", "--train-backend"),
    "rollout_backends": RegistryKind("slime_register_rollout_backends", "rollout backend", "--rollout-backend"),
    "reward_functions": RegistryKind("slime_register_reward_functions", "reward function", "--rm-type"),
    "rollout_functions": RegistryKind(
        "slime_register_rollout_functions", "rollout function", "--rollout-function-path"
    ),
    "generate_functions": RegistryKind(
        "slime_register_generate_functions", "generate function", "--custom-generate-function-path"
    ),
    "tools": RegistryKind("slime_register_tools", "tool", "<tool_call>"),
    "sample_filters": RegistryKind("slime_register_sample_filters", "sample filter", "--dynamic-sampling-filter-path"),
    "advantage_estimators": RegistryKind(
        "slime_register_advantage_estimators", "advantage estimator", "--advantage-estimator"
    ),
    "policy_losses": RegistryKind("slime_register_policy_losses", "policy loss", "--loss-type"),
    "importance_weights": RegistryKind(
        "slime_register_importance_weights", "importance-weight function", "--custom-tis-function-path"
    ),
    "metric_sinks": RegistryKind("slime_register_metric_sinks", "metric sink", "--metric-sinks"),
    "data_sources": RegistryKind("slime_register_data_sources", "data source", "--data-source-path"),
    "commands": RegistryKind("slime_register_commands", "command", "slime <command>"),
}


@dataclass(frozen=True)
class PluginInfo:
    name: str
    distribution: str  # "" for plugins registered in-process rather than through an entry point
    version: str

    def describe(self) -> str:
        if not self.distribution:
            return f"plugin '{self.name}'"
        return f"plugin '{self.name}' (distribution {self.distribution} {self.version})"


@dataclass(frozen=True)
class Entry:
    name: str
    obj: Any
    plugin: PluginInfo


@dataclass
class Registry:
    kind: str
    entries: dict[str, Entry] = field(default_factory=dict)

    @property
    def noun(self) -> str:
        return REGISTRY_KINDS[self.kind].noun

    def add(self, name: str, obj: Any, plugin: PluginInfo) -> None:
        if not isinstance(name, str) or not name:
            raise PluginError(f"{plugin.describe()} registered a {self.noun} with an invalid name {name!r}")
        if name in self.entries:
            first = self.entries[name].plugin
            raise PluginError(
                f"{self.noun} '{name}' is registered twice: by {first.describe()} and by {plugin.describe()}"
            )
        self.entries[name] = Entry(name, obj, plugin)

    def names(self) -> list[str]:
        return sorted(self.entries)

    def get(self, name: str, flag: str | None = None) -> Any:
        if name not in self.entries:
            raise self.unknown(name, flag)
        return self.entries[name].obj

    def unknown(self, name: str, flag: str | None = None) -> PluginError:
        """The error for a name nobody registered, listing those that are."""
        flag = flag or REGISTRY_KINDS[self.kind].flag
        known = ", ".join(self.names()) or "none"
        return PluginError(f"unknown {self.noun} '{name}' (from {flag}); registered: {known}")


class _SlimePlugins:
    """Holds the one plugin manager, what each plugin is, and the registries built from it."""

    def __init__(self) -> None:
        self.manager = pluggy.PluginManager(ENTRY_POINT_GROUP)
        self.manager.add_hookspecs(hookspecs)
        self.info: dict[str, PluginInfo] = {}
        self.registries: dict[str, Registry] = {}
        self.loaded = False

    def load_entry_points(self) -> None:
        if self.loaded:
            return
        self.loaded = True
        seen: set[tuple[str, str]] = set()
        for ep in sorted(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
            dist_name = ep.dist.name if ep.dist else ""
            dist_version = ep.dist.version if ep.dist else ""
            if (ep.name, ep.value) in seen:  # one distribution visible twice on sys.path
                continue
            seen.add((ep.name, ep.value))
            plugin = PluginInfo(ep.name, dist_name, dist_version)
            try:
                module = ep.load()
            except Exception as exc:
                raise PluginError(
                    f"{plugin.describe()} failed to import '{ep.value}': {type(exc).__name__}: {exc}"
                ) from exc
            self.add(module, plugin)

    def add(self, module: Any, plugin: PluginInfo) -> None:
        if plugin.name in self.info:
            other = self.info[plugin.name]
            raise PluginError(f"two plugins are named '{plugin.name}': {other.describe()} and {plugin.describe()}")
        try:
            self.manager.register(module, name=plugin.name)
        except ValueError as exc:
            raise PluginError(f"{plugin.describe()} could not be registered: {exc}") from exc
        self.info[plugin.name] = plugin
        self.registries.clear()

    def remove(self, name: str) -> None:
        self.manager.unregister(name=name)
        del self.info[name]
        self.registries.clear()

    def registry(self, kind: str) -> Registry:
        self.load_entry_points()
        if kind not in self.registries:
            self.registries[kind] = self._collect(kind)
        return self.registries[kind]

    def _collect(self, kind: str) -> Registry:
        registry = Registry(kind)
        caller = getattr(self.manager.hook, REGISTRY_KINDS[kind].hook)
        # Call each implementation with a register bound to its plugin, so entries know who registered them.
        for impl in caller.get_hookimpls():
            plugin = self.info[impl.plugin_name]

            def register(name: str, obj: Any, _plugin: PluginInfo = plugin) -> None:
                registry.add(name, obj, _plugin)

            impl.function(register=register)
        return registry


_PLUGINS = _SlimePlugins()


def plugin_manager() -> pluggy.PluginManager:
    """The one ``PluginManager("slime")``, with every installed plugin loaded."""
    _PLUGINS.load_entry_points()
    return _PLUGINS.manager


def registry(kind: str) -> Registry:
    """The registry of one kind (a key of ``REGISTRY_KINDS``), collected from every plugin's register hook."""
    return _PLUGINS.registry(kind)


def register_plugin(module: Any, name: str) -> None:
    """Register an in-process plugin (an object or module with ``@hookimpl`` functions) next to the installed ones."""
    _PLUGINS.load_entry_points()
    _PLUGINS.add(module, PluginInfo(name, "", ""))


def unregister_plugin(name: str) -> None:
    _PLUGINS.remove(name)


def plugins() -> list[PluginInfo]:
    _PLUGINS.load_entry_points()
    return sorted(_PLUGINS.info.values(), key=lambda p: p.name)


def registered_by(plugin_name: str) -> dict[str, list[str]]:
    """What one plugin registered, by registry kind (kinds with nothing are left out)."""
    found: dict[str, list[str]] = {}
    for kind in REGISTRY_KINDS:
        names = [e.name for e in registry(kind).entries.values() if e.plugin.name == plugin_name]
        if names:
            found[kind] = sorted(names)
    return found


def load_object(path: str, flag: str) -> Any:
    """Import ``package.module.attribute`` (slime's ``--custom-*-path`` form), with an error naming the flag."""
    module_name, _, attribute = path.rpartition(".")
    if not module_name:
        raise PluginError(f"{flag} {path!r} is not a dotted path of the form 'package.module.function'")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise PluginError(
            f"{flag} {path!r}: cannot import module '{module_name}': {type(exc).__name__}: {exc}"
        ) from exc
    try:
        return getattr(module, attribute)
    except AttributeError:
        raise PluginError(f"{flag} {path!r}: module '{module_name}' has no attribute '{attribute}'") from None


def resolve(kind: str, name_or_path: str, flag: str | None = None) -> Any:
    """A registered name, or else (when it contains a dot) a dotted import path, as slime's flags accept both."""
    return resolve_with_origin(kind, name_or_path, flag)[0]


def resolve_with_origin(
    kind: str, name_or_path: str, flag: str | None = None, *, importable: bool = True
) -> tuple[Any, str]:
    """``resolve``, with where the object came from, for messages: the plugin that registered it, or ``from <flag>``.

    ``importable=False`` accepts registered names only, for names read from data rather than from the user's flags:
    data may pick among installed code, never name code to import.
    """
    reg = registry(kind)
    flag = flag or REGISTRY_KINDS[kind].flag
    if name_or_path in reg.entries:
        entry = reg.entries[name_or_path]
        return entry.obj, entry.plugin.describe()
    if importable and "." in name_or_path:
        return load_object(name_or_path, flag), f"from {flag}"
    raise reg.unknown(name_or_path, flag)
