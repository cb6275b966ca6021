"""arcuate's embedded Delta Sharing server: the open protocol over the local share catalog.

``create_app`` builds the ASGI app; ``serve_in_thread`` runs it in the background (tests,
notebooks); ``arcuate serve`` runs it in the foreground; ``write_profile`` writes the v1
profile file a recipient opens with the ``delta_sharing`` client.
"""

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
