"""One-time activation links: ``<endpoint>/activation?code=<code>`` gives a recipient its
profile once.

``GET`` shows a small page naming the recipient, with a download button, and changes nothing:
a chat app or mail scanner that fetches the link to preview it does not use it up. ``POST``
(the button, or ``curl -X POST``) mints the recipient's credential, stores only its hash, and
answers the profile file. It runs under the catalog's file lock, so of concurrent clicks
exactly one gets the profile; the others, and every later click, get ``410`` saying the link
was used. The code travels in the query string, which the request log never records.
"""

from __future__ import annotations

from collections.abc import Callable
from html import escape
from typing import Final

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from arcuate.backends.sharing.catalog import LocalShareCatalog
from arcuate.backends.sharing.credentials import ActivationRefused
from arcuate.backends.sharing.profiles import oauth_profile_text, profile_text
from arcuate.backends.sharing.server.wire import SharingError

#: Our codes are 43 characters; a longer one is not worth hashing.
MAX_CODE_CHARS: Final = 128
#: A page and a profile that hold or lead to a secret: not cached, not framed, no referrer.
_PRIVATE: Final = {
    "Cache-Control": "no-store",
    "Pragma": "no-cache",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "X-Robots-Tag": "noindex",
}
_PAGE: Final = """<!doctype html>
<html><head><meta charset="utf-8"><title>Delta Sharing activation</title></head>
<body>
<h1>Delta Sharing: recipient {name}</h1>
<p>This link gives the profile file of recipient <b>{name}</b> <b>once</b>. Keep the file
private: it holds the credential that reads the data shared with you. Open it with the
<code>delta-sharing</code> client or arcuate.</p>
<form method="post"><button type="submit">Download the profile</button></form>
<p>From a terminal: <code>curl -X POST -o {name}.share '&lt;this link&gt;'</code></p>
</body></html>
"""


async def activation_endpoint(
    request: Request, catalog: LocalShareCatalog, endpoint: str, admit: Callable[[str], None]
) -> Response:
    """The page (GET) or the profile, once (POST), of an activation link; ``endpoint`` is
    the server's endpoint as the recipient reaches it, which the profile names. ``admit``
    applies the recipient's IP access list first (raising a 403 :class:`SharingError`): the
    profile carries the credential, and a refused click leaves the link unused.

    Raises:
        SharingError: 404 for a code that was never issued; 410 for a link that was used,
            withdrawn or has expired (the message says which).
    """
    code = request.query_params.get("code") or ""
    try:
        if not code or len(code) > MAX_CODE_CHARS:
            raise ActivationRefused(
                404, "RESOURCE_DOES_NOT_EXIST", "this activation link is not valid"
            )
        name = await run_in_threadpool(catalog.activation, code)
        request.scope.setdefault("state", {})["recipient"] = name
        admit(name)
        if request.method != "POST":
            return _page(name)
        activated = await run_in_threadpool(lambda: catalog.activate(code, endpoint=endpoint))
    except ActivationRefused as refused:
        raise SharingError(refused.status, refused.code, refused.message) from None
    request.scope.setdefault("state", {})["recipient"] = activated.recipient
    if activated.client_id is not None:
        text = oauth_profile_text(endpoint, activated.client_id, activated.secret)
    else:
        text = profile_text(endpoint, activated.secret, activated.expires_at)
    headers = {**_PRIVATE, "Content-Disposition": 'attachment; filename="config.share"'}
    return Response(text, media_type="application/json", headers=headers)


def _page(name: str) -> Response:
    headers = {
        **_PRIVATE,
        "Content-Security-Policy": "default-src 'none'; form-action 'self'",
    }
    return Response(_PAGE.format(name=escape(name)), media_type="text/html", headers=headers)
