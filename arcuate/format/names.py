"""The Delta Sharing name rule, in one place: what a share, schema or table may be called.

The planner rejects a name that breaks it at the statement's span, before anything runs; the
local share catalog checks it again for callers that skip the planner (the Python API, tests).
Standard library only, so the planner can import it and stay pure.
"""

from __future__ import annotations

import re
from typing import Final

#: 1-255 characters, none of them a dot (coordinates ``share.schema.table`` split on it),
#: whitespace, ``/`` or a control character.
SHARE_NAME: Final = re.compile(r"^[^.\s/\x00-\x1f\x7f]{1,255}$")


def is_share_name(name: str) -> bool:
    """Whether ``name`` may name a share, schema or table under the Delta Sharing protocol."""
    return SHARE_NAME.match(name) is not None
