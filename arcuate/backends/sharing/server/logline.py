"""Log fields a client cannot use to forge, split or hide a log line.

Request paths arrive percent-decoded, so ``%0A`` is a real newline by the time it is logged,
and uvicorn takes the client address from ``X-Forwarded-For`` on loopback. Every field that
reaches the log goes through :func:`log_field`: one request stays one line with space
separated fields, whatever the client sent.
"""

from __future__ import annotations

import re
from typing import Final

#: Printable ASCII without space or backslash: logged as it is.
_PLAIN: Final = re.compile(r"[!-\[\]-~]*")
#: Longest field written (an 8 KiB path is cut, with the number of characters left out).
FIELD_LIMIT: Final = 1024


def _escape(c: str) -> str:
    o = ord(c)
    if c == "\\":
        return "\\\\"
    if o < 0x100:
        return f"\\x{o:02x}"
    if o < 0x10000:
        return f"\\u{o:04x}"
    return f"\\U{o:08x}"


def log_field(value: object, limit: int = FIELD_LIMIT, *, spaces: bool = False) -> str:
    """``value`` as one log field: no whitespace, no control, format or separator characters.

    Such characters (CR, LF, ESC, NUL, DEL, C1 controls like NEL, U+2028/2029, bidi
    overrides, space) become ``\\xNN``/``\\uNNNN`` escapes and a backslash is doubled, so
    the escaping is unambiguous. Printable non-ASCII text (names in any script) stays
    readable. An empty value is ``-``. ``spaces`` keeps plain spaces, for a message that is
    the last field of its line.
    """
    text = "" if value is None else str(value)
    if not text:
        return "-"
    cut = ""
    if len(text) > limit:
        text, cut = text[:limit], f"...(+{len(text) - limit})"
    if _PLAIN.fullmatch(text):
        return text + cut
    return "".join(c if _kept(c, spaces) else _escape(c) for c in text) + cut


def _kept(c: str, spaces: bool) -> bool:
    return c.isprintable() and c != "\\" and (spaces or c != " ")
