"""The plug-in registry: one record per backend, and the only list of backend names.

Each backend package declares its :class:`BackendPlugin` records (role, name, factory,
capabilities) in its ``__init__``; the built-in packages are listed here by ``"module:attr"``,
so listing names imports no engine. Third-party backends come from the ``arcuate.backends``
entry-point group (entry point ``<role>.<name>``, its object a :class:`BackendPlugin` or a
bare factory), and :func:`register_backend` adds one at run time.

Settings check names here (:func:`check_name`); the edge builds backends here
(:func:`build`) and hands the planner what they can do as plain data
(:mod:`arcuate.plan.capabilities`): the planner never imports this module.

Every factory has one signature, ``factory(settings, retry) -> backend``: the resolved
:class:`~arcuate.config.Settings` and the :class:`~arcuate.backends.retry.RetryPolicy` for
servers that do not answer. This module imports only the standard library, ``errors`` and the
plain data of ``plan.capabilities`` (settings check names against it).
"""

from __future__ import annotations

import difflib
import importlib
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

from arcuate.errors import BackendUnavailableError, ConfigurationError
from arcuate.plan.capabilities import BackendCapabilities

#: ``factory(settings, retry) -> backend``.
Factory = Callable[[Any, Any], Any]
#: The entry-point group third-party backends declare.
GROUP: Final = "arcuate.backends"
#: Each role, as errors name it.
ROLES: Final = {
    "table": "table backend",
    "catalog": "share catalog",
    "reader": "share reader",
    "model_source": "model source",
    "model_sink": "model sink",
}
#: The built-in backend packages' record lists (imported only to list or build them).
BUILTIN: Final = (
    "arcuate.backends.deltalake:PLUGINS",
    "arcuate.backends.sharing:PLUGINS",
    "arcuate.backends.spark:PLUGINS",
    "arcuate.backends.mlflow:PLUGINS",
)


@dataclass(frozen=True)
class BackendPlugin:
    """One backend: its role, its name, how to build it and what it can do.

    ``factory`` is a callable or a ``"module:attr"`` string imported when the backend is first
    built. ``capabilities`` may depend on the settings (a function of them). ``extra`` names
    the ``pip install 'arcuate[<extra>]'`` that brings its engine. ``add_table_sql`` (share
    catalogs that run SQL) gives the statements adding a table to a share runs, for EXPLAIN:
    ``add_table_sql(share, table_parts, shared_as=(schema, table)) -> list[str]``.
    """

    role: str
    name: str
    factory: Factory | str
    capabilities: BackendCapabilities | Callable[[Any], BackendCapabilities] = field(
        default_factory=BackendCapabilities
    )
    extra: str | None = None
    add_table_sql: Callable[..., list[str]] | str | None = None

    def capabilities_for(self, settings: Any) -> BackendCapabilities:
        """What the backend can do with these settings."""
        caps = self.capabilities
        return caps if isinstance(caps, BackendCapabilities) else caps(settings)

    def load(self) -> Factory:
        """The factory, imported if it was given as ``"module:attr"``.

        Raises:
            BackendUnavailableError: its module cannot be imported (with an install hint).
        """
        return self._resolve(self.factory)  # type: ignore[no-any-return]

    def sql_for_add_table(self) -> Callable[..., list[str]] | None:
        """``add_table_sql``, imported if given as ``"module:attr"`` (None: it runs no SQL)."""
        if self.add_table_sql is None:
            return None
        return self._resolve(self.add_table_sql)  # type: ignore[no-any-return]

    def _resolve(self, target: object) -> Any:
        if not isinstance(target, str):
            return target
        module, _, attr = target.partition(":")
        try:
            return getattr(importlib.import_module(module), attr)
        except ImportError as exc:
            hint = f"pip install 'arcuate[{self.extra}]'" if self.extra else None
            raise BackendUnavailableError(
                f"the {self.name} {ROLES.get(self.role, self.role)} cannot be loaded: {exc}",
                hint=hint,
            ) from exc


_registered: dict[tuple[str, str], BackendPlugin] = {}


def register_backend(
    role: str,
    name: str,
    factory: Factory | str,
    *,
    capabilities: BackendCapabilities | Callable[[Any], BackendCapabilities] | None = None,
    extra: str | None = None,
) -> BackendPlugin:
    """Register a backend at run time (it takes precedence over one of the same name).

    After this the name works everywhere a backend name does: settings accept it, and
    statements build it with ``factory(settings, retry)``.
    """
    _role_label(role)
    plugin = BackendPlugin(
        role, name, factory, capabilities or BackendCapabilities(), extra=extra
    )
    _registered[(role, name)] = plugin
    return plugin


def unregister_backend(role: str, name: str) -> None:
    """Forget a backend registered with :func:`register_backend` (tests, notebooks)."""
    _registered.pop((role, name), None)


def _role_label(role: str) -> str:
    if role not in ROLES:
        raise ConfigurationError(f"Unknown backend role {role!r}. Known: {', '.join(ROLES)}")
    return ROLES[role]


def _builtin(role: str) -> dict[str, BackendPlugin]:
    found: dict[str, BackendPlugin] = {}
    for target in BUILTIN:
        module, _, attr = target.partition(":")
        for plugin in getattr(importlib.import_module(module), attr):
            if plugin.role == role:
                found[plugin.name] = plugin
    return found


def _entry_points(role: str) -> dict[str, Any]:
    from importlib.metadata import entry_points

    found = {}
    for ep in entry_points(group=GROUP):
        prefix, _, name = ep.name.partition(".")
        if prefix == role and name:
            found[name] = ep
    return found


def available_backends(role: str) -> list[str]:
    """Names of every backend of a role: built-in, registered and plugins (broken ones warn)."""
    _role_label(role)
    names = set(_builtin(role)) | {n for r, n in _registered if r == role}
    try:
        names |= set(_entry_points(role))
    except Exception as exc:  # a broken plugin must not stop listing
        warnings.warn(f"could not list arcuate plugins: {exc}", stacklevel=2)
    return sorted(names)


def _unknown(role: str, name: str) -> ConfigurationError:
    known = available_backends(role)
    near = difflib.get_close_matches(name, known, n=1)
    did = f" Did you mean {near[0]}?" if near else ""
    return ConfigurationError(
        f"Unknown {_role_label(role)} {name!r}.{did} Known: {', '.join(known)}"
    )


def _from_entry_point(role: str, name: str, ep: Any) -> BackendPlugin:
    try:
        obj = ep.load()
    except Exception as exc:
        raise BackendUnavailableError(
            f"the {name} {_role_label(role)} plugin ({ep.value}) failed to load: {exc}"
        ) from exc
    if isinstance(obj, BackendPlugin):
        if (obj.role, obj.name) != (role, name):
            raise BackendUnavailableError(
                f"the plugin {ep.value} is declared as {role}.{name} but its record says "
                f"{obj.role}.{obj.name}"
            )
        return obj
    if not callable(obj):
        raise BackendUnavailableError(
            f"the {name} {_role_label(role)} plugin ({ep.value}) is neither a BackendPlugin "
            f"record nor a factory"
        )
    return BackendPlugin(role, name, obj)


def get_plugin(role: str, name: str) -> BackendPlugin:
    """The record of backend ``name`` of ``role``: registered, built-in, then entry points.

    Raises:
        ConfigurationError: no such backend (with a close match and the known names).
        BackendUnavailableError: an installed plugin that cannot be loaded.
    """
    _role_label(role)
    if (role, name) in _registered:
        return _registered[(role, name)]
    builtin = _builtin(role)
    if name in builtin:
        return builtin[name]
    plugins = _entry_points(role)
    if name in plugins:
        return _from_entry_point(role, name, plugins[name])
    raise _unknown(role, name)


def check_name(role: str, name: str) -> str:
    """``name`` if a backend of ``role`` has it (without loading it), else the error.

    Raises:
        ConfigurationError: no such backend (with a close match and the known names).
    """
    _role_label(role)
    if (role, name) in _registered or name in _builtin(role) or name in _entry_points(role):
        return name
    raise _unknown(role, name)


def get_backend(role: str, name: str) -> Factory:
    """The factory of backend ``name`` (imported now).

    Raises:
        ConfigurationError: no such backend (with a close match and the known names).
        BackendUnavailableError: it exists but cannot be imported (with an install hint).
    """
    return get_plugin(role, name).load()


def build(role: str, name: str, settings: Any, retry: Any) -> Any:
    """A new backend: ``factory(settings, retry)`` of the record of ``name``.

    The caller (the engine's Context) checks the result against the role's Protocol.
    """
    return get_backend(role, name)(settings, retry)


def find(role: str, **wanted: object) -> BackendPlugin | None:
    """The first backend of ``role`` whose capabilities have these values (``flavor="spark"``):
    registered first, then built-in, then plugins (loaded only when needed)."""

    def fits(plugin: BackendPlugin) -> bool:
        caps = plugin.capabilities
        if not isinstance(caps, BackendCapabilities):
            return False
        return all(getattr(caps, key, None) == value for key, value in wanted.items())

    registered = [p for (r, _), p in sorted(_registered.items()) if r == role]
    for plugin in [*registered, *_builtin(role).values()]:
        if fits(plugin):
            return plugin
    for name, ep in sorted(_entry_points(role).items()):
        plugin = _from_entry_point(role, name, ep)
        if fits(plugin):
            return plugin
    return None
