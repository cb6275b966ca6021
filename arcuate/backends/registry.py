"""Backend lookup by name: built-ins registered here, plugins from the ``arcuate.backends``
entry-point group. Only the edge (``execute`` and the front ends, through the engine
context) calls :func:`get_backend`; the parser and planner never do.
"""

from __future__ import annotations

import difflib
import importlib
import warnings
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Any, Final

from arcuate.errors import BackendUnavailableError, ConfigurationError

Factory = Callable[..., Any]

#: role -> name -> "module:attribute" of the factory (imported only when asked for).
_BUILTIN: Final[dict[str, dict[str, str]]] = {
    "table": {
        "deltalake": "arcuate.backends.deltalake.store:DeltaLakeTableStore",
        "spark": "arcuate.backends.spark.store:SparkTableStore",
    },
    "catalog": {
        "local": "arcuate.backends.sharing.catalog:LocalShareCatalog",
        "unity": "arcuate.backends.spark.unity:UnityShareCatalog",
    },
}
_EXTRAS: Final = {"spark": "spark", "unity": "spark"}
_registered: dict[str, dict[str, Factory]] = {}


def register_backend(role: str, name: str, factory: Factory) -> None:
    """Register a backend factory for a role (``table`` or ``catalog``)."""
    _registered.setdefault(role, {})[name] = factory


def _plugins(role: str) -> dict[str, Any]:
    found = {}
    for ep in entry_points(group="arcuate.backends"):
        prefix, _, name = ep.name.partition(".")
        if prefix == role and name:
            found[name] = ep
    return found


def available_backends(role: str) -> list[str]:
    """Names of every backend of a role: built-in, registered and plugins (broken ones warn)."""
    names = set(_BUILTIN.get(role, {})) | set(_registered.get(role, {}))
    try:
        names |= set(_plugins(role))
    except Exception as exc:  # a broken plugin must not stop listing
        warnings.warn(f"could not list arcuate plugins: {exc}", stacklevel=2)
    return sorted(names)


def get_backend(role: str, name: str) -> Factory:
    """The factory for ``name``.

    Raises:
        ConfigurationError: no such backend (with a close match and the known names).
        BackendUnavailableError: it exists but cannot be imported (with an install hint).
    """
    if name in _registered.get(role, {}):
        return _registered[role][name]
    target = _BUILTIN.get(role, {}).get(name)
    if target is not None:
        module, _, attr = target.partition(":")
        try:
            return getattr(importlib.import_module(module), attr)  # type: ignore[no-any-return]
        except ImportError as exc:
            extra = _EXTRAS.get(name)
            hint = f"pip install 'arcuate[{extra}]'" if extra else None
            raise BackendUnavailableError(
                f"the {name} {role} backend cannot be loaded: {exc}", hint=hint
            ) from exc
    plugins = _plugins(role)
    if name in plugins:
        try:
            return plugins[name].load()  # type: ignore[no-any-return]
        except Exception as exc:
            raise BackendUnavailableError(
                f"the {name} {role} plugin failed to load: {exc}"
            ) from exc
    known = available_backends(role)
    near = difflib.get_close_matches(name, known, n=1)
    did = f" Did you mean {near[0]}?" if near else ""
    raise ConfigurationError(f"Unknown {role} backend {name!r}.{did} Known: {', '.join(known)}")
