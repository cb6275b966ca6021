"""arcuate's embedded Delta Sharing server: the open protocol over the local share catalog.

``create_app`` builds the ASGI app; ``serve_in_thread`` runs it in the background (tests,
notebooks); ``arcuate serve`` runs it in the foreground; ``write_profile`` writes the v1
profile file a recipient opens with the ``delta_sharing`` client.

The names are imported on first use (module ``__getattr__``): importing any module of this
package, such as :mod:`.endpoints`, must not pull in starlette, uvicorn and pyarrow, which
``arcuate --help`` and ``arcuate explain`` never use.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from arcuate.backends.sharing.server.app import (
        DEFAULT_PREFIX,
        ServerOptions,
        SharingServer,
        create_app,
    )
    from arcuate.backends.sharing.server.runner import (
        ServerHandle,
        profile_text,
        serve_in_thread,
        write_profile,
    )

#: public name -> the module of this package that defines it
_HOMES: Final = {
    "DEFAULT_PREFIX": "app",
    "ServerOptions": "app",
    "SharingServer": "app",
    "create_app": "app",
    "ServerHandle": "runner",
    "profile_text": "runner",
    "serve_in_thread": "runner",
    "write_profile": "runner",
}

__all__ = [
    "DEFAULT_PREFIX",
    "ServerHandle",
    "ServerOptions",
    "SharingServer",
    "create_app",
    "profile_text",
    "serve_in_thread",
    "write_profile",
]


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f"{__name__}.{home}"), name)
    globals()[name] = value  # once imported, later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_HOMES})
