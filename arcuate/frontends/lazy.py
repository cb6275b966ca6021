"""pandas only where a step uses it, in the ``arcuate`` command's own process.

pyarrow imports pandas (0.3-0.4 s, a tenth to a fifth of a tiny command) the first time it
turns any Python value into an Arrow one (``pa.array``, ``pa.scalar``, a compute function
given a Python number, ``from_pylist``): it asks whether the value is a pandas object. A
statement that exports or imports a few runs has no other use for pandas.

:func:`defer_pandas` answers that probe with "no pandas" while pandas is not loaded: when
pyarrow is imported, its probe runs once with ``import pandas`` refused (for that call and
thread only), which pyarrow remembers. pyarrow's own pandas conversions (``to_pandas``,
``from_pandas``, ...) ask for pandas with ``raise_`` and so still import it; and as soon as
pandas is imported by anyone (MLflow, a model's flavor, pyarrow itself), pyarrow's probe is
run again, so from then on pyarrow sees pandas objects exactly as it does without this.
Nothing changes in a process where pandas is already imported.

Only the command calls this: a Python user's process keeps pyarrow's own behaviour.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import sys
import threading
from collections.abc import Callable
from types import ModuleType
from typing import Any

_lock = threading.Lock()
_installed: list[_AfterImport] = []


def defer_pandas() -> None:
    """Let pyarrow make Arrow values from Python ones without importing pandas (see above).

    Idempotent; a no-op once pandas is imported.
    """
    with _lock:
        if _installed or "pandas" in sys.modules:
            return
        hook = _AfterImport({"pyarrow": _probe_without_pandas, "pandas": _reprobe})
        sys.meta_path.insert(0, hook)
        _installed.append(hook)
    if "pyarrow" in sys.modules:
        _probe_without_pandas()


def _shim() -> Any:
    """pyarrow's pandas shim (``pyarrow.lib._pandas_api``), or None if pyarrow is not loaded
    or has none."""
    lib = sys.modules.get("pyarrow.lib")
    return getattr(lib, "_pandas_api", None)


def _probe_without_pandas() -> None:
    """Run pyarrow's pandas probe once with ``import pandas`` refused, unless pandas is loaded
    (or being loaded: it imports pyarrow itself)."""
    shim = _shim()
    if shim is None or "pandas" in sys.modules or not _installed:
        return
    hook = _installed[0]
    hook.refusing.on = True
    try:
        shim.have_pandas  # noqa: B018 - the probe; pyarrow keeps its answer
    except ImportError:  # pragma: no cover - a pyarrow whose probe raises
        pass
    finally:
        hook.refusing.on = False


def _reprobe() -> None:
    """pandas is loaded: make pyarrow's shim see it (its ``pd`` property imports it again,
    which now costs nothing, and records that pandas is there)."""
    shim = _shim()
    if shim is not None:
        shim.pd  # noqa: B018


class _AfterImport(importlib.abc.MetaPathFinder):
    """Calls a function after a top-level module is imported; refuses ``import pandas`` in
    the thread that runs pyarrow's probe."""

    def __init__(self, hooks: dict[str, Callable[[], None]]) -> None:
        self.hooks = hooks
        self.refusing = threading.local()
        self._finding = threading.local()

    def find_spec(
        self, name: str, path: Any = None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if name == "pandas" and getattr(self.refusing, "on", False):
            raise ModuleNotFoundError("pandas is deferred", name=name)
        hook = self.hooks.get(name)
        if hook is None or getattr(self._finding, "on", False):
            return None
        self._finding.on = True
        try:
            spec = importlib.util.find_spec(name)
        finally:
            self._finding.on = False
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        spec.loader = _ThenLoader(spec.loader, hook)
        return spec


class _ThenLoader(importlib.abc.Loader):
    """A module's own loader, then ``hook`` once the module is executed."""

    def __init__(self, loader: Any, hook: Callable[[], None]) -> None:
        self._loader = loader
        self._hook = hook

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        created: ModuleType | None = self._loader.create_module(spec)
        return created

    def exec_module(self, module: ModuleType) -> None:
        self._loader.exec_module(module)
        # the module keeps its own loader: nothing of this wrapper stays behind
        module.__loader__ = self._loader
        if module.__spec__ is not None:
            module.__spec__.loader = self._loader
        self._hook()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._loader, name)
