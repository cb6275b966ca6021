"""Where an import comes from, and who owns what it writes.

Two parts of an object's :class:`~arcuate.backends.protocols.Provenance` decide which runs
and versions an import may match and change (``docs/recipient.md``, "Provenance, re-runs and
OVERWRITE"); the sink keeps them with each object (MLflow: the ``arcuate.origin`` and
``arcuate.owner`` tags):

* ``origin``: the provider, share and table an object was imported from, written as
  ``<endpoint>#<share>.<schema>.<table>`` with the endpoint read from the profile (so a profile
  file that moves or is renamed still names the same provider). When the profile cannot be
  read (a frame imported with a label as its source), it is the coordinate as given.
* ``owner``: which import wrote a run, ``experiment`` or ``model:<target model>``.
  Only its owner changes a run; a model import may *link* a version to a run an experiment
  import owns (same provider and share, same bytes), never write into it.

This module reads the profile file the user named (its ``endpoint`` only) and nothing else.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from arcuate.backends.protocols import Provenance

#: A profile is a few hundred bytes; a larger file is not read as one.
_MAX_PROFILE_BYTES = 1 << 20
#: The owner of the runs an experiment import writes.
EXPERIMENT_OWNER = "experiment"


def model_owner(model: str) -> str:
    """The owner of the runs (and the experiment) a model import writes."""
    return f"model:{model}"


def model_experiment(model: str) -> str:
    """The experiment that holds the runs a model import recreates for ``model``.

    Model names cannot contain ``/`` (MLflow's rule), so no two models share one.
    """
    return f"models/{model}"


def family_of(origin: str) -> str:
    """``<endpoint>#<share>`` of an origin, or ``""`` for a label."""
    endpoint, sep, table = origin.rpartition("#")
    if not sep or not endpoint.startswith(("http://", "https://")):
        return ""
    share = table.split(".", 1)[0]
    return f"{endpoint}#{share}" if share else ""


@dataclass(frozen=True)
class Origin:
    """The provenance of one import statement."""

    #: the coordinate as the statement gave it
    source: str
    #: provider, share and table (empty when there is no source at all)
    tag: str

    @property
    def family(self) -> str:
        """``<endpoint>#<share>``: the provider and share, empty when the provider is unknown."""
        return family_of(self.tag)

    def matches(self, found: Provenance) -> bool:
        """Whether an object's provenance says it came from this very table.

        Objects imported before the origin was recorded carry only their source coordinate:
        they match when that is the same coordinate.
        """
        if found.origin is not None:
            return found.origin == self.tag
        return found.source == self.source

    def same_share(self, found: Provenance) -> bool:
        """Whether an object came from the same provider and share (any table of it)."""
        return bool(self.family) and family_of(found.origin or "") == self.family

    def stamp(self, owner: str) -> Provenance:
        """The provenance of an object this import writes for ``owner``."""
        return Provenance(self.source, self.tag or None, owner)


def _endpoint(url: str) -> str:
    """An endpoint as provenance: scheme and host lower-cased, no credentials, query or
    fragment, no trailing slash."""
    parts = urlsplit(url.strip())
    host = (parts.hostname or "").lower()
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme.lower(), host, parts.path.rstrip("/"), "", ""))


def origin_of(source: str) -> Origin:
    """The provenance of ``source`` (``<profile>#<share>.<schema>.<table>``, or a label)."""
    if not source:
        return Origin("", "")
    profile, sep, table = source.rpartition("#")
    if not sep or not profile or len(table.split(".")) != 3:
        return Origin(source, source)
    endpoint = _profile_endpoint(profile)
    if endpoint is None:  # a label, or a profile that is gone: the coordinate is all there is
        return Origin(source, source)
    return Origin(source, f"{endpoint}#{table}")


def _profile_endpoint(path: str) -> str | None:
    """The normalised ``endpoint`` of a local profile file, or None when it cannot be read."""
    try:
        with Path(path).expanduser().open("rb") as fh:
            doc = json.loads(fh.read(_MAX_PROFILE_BYTES))
    except (OSError, ValueError):
        return None
    url = doc.get("endpoint") if isinstance(doc, dict) else None
    if not isinstance(url, str):
        return None
    try:
        endpoint = _endpoint(url)
    except ValueError:  # a port that is not a number
        return None
    return endpoint if endpoint.startswith(("http://", "https://")) else None
