"""Redaction before export (issue 16 item 2): the policy and how it rewrites values.

A policy is a list of rules; each names what it covers (params, tags, artifacts, dataset
sources), a pattern matched against the KEY (a param or tag key; an artifact's relative path;
datasets have no pattern: every source and digest is covered) and what to do: drop the entry,
or replace its value by a keyed hash (HMAC-SHA256) so equal values stay comparable without
being revealed. The export applies it to the values *before* rows are built, so a redacted
value never reaches a written file. Values are never matched: a secret's key is what the
provider knows; matching values would mean scanning them, which is the leak we avoid.
"""

from __future__ import annotations

import fnmatch
import hashlib
import hmac
import re
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Final, Literal

from arcuate.errors import ConfigurationError
from arcuate.format.files import Record
from arcuate.format.limits import MAX_DATASET_DIGEST_LENGTH

Target = Literal["params", "tags", "artifacts", "datasets"]
Action = Literal["drop", "hash"]

#: the tag an exported run carries: the keys whose values were redacted (never the values)
REDACTED_TAG = "arcuate.redacted"
#: the environment variable holding the provider's redaction key (the ``redaction_key`` setting)
KEY_ENV = "ARCUATE_REDACTION_KEY"
_HASH_PREFIX = "hmac-sha256:"
#: what a dropped dataset source or digest becomes (MLflow requires both to be present)
DROPPED: Final = "redacted"


class RedactionPatternError(ValueError):
    """A MATCHING pattern does not compile; ``offset`` is where inside the pattern."""

    def __init__(self, pattern: str, reason: str, offset: int | None) -> None:
        super().__init__(f"REDACT pattern {pattern!r} does not compile: {reason}")
        self.pattern = pattern
        self.reason = reason
        self.offset = offset


@dataclass(frozen=True, slots=True)
class Rule:
    """One REDACT item: ``params MATCHING 'regex' [HASH]``, ``ARTIFACTS MATCHING 'glob'``,
    ``DATASETS SOURCES``."""

    target: Target
    pattern: str | None = None
    action: Action = "drop"
    _regex: re.Pattern[str] | None = field(default=None, compare=False, repr=False)

    @classmethod
    def make(cls, target: Target, pattern: str | None = None, action: Action = "drop") -> Rule:
        """A rule with its pattern compiled now, so a bad regex is a plan-time error."""
        if target == "artifacts" and action == "hash":
            raise ValueError("REDACT ARTIFACTS cannot HASH: a matching file is left out")
        regex = None
        if pattern is not None:
            source = fnmatch.translate(pattern) if target == "artifacts" else pattern
            try:
                regex = re.compile(source)
            except re.error as exc:
                raise RedactionPatternError(pattern, exc.msg, exc.pos) from None
        return cls(target, pattern, action, regex)

    def matches(self, key: str) -> bool:
        """Whether this rule covers ``key`` (searched, not anchored, for params and tags)."""
        if self._regex is None:
            return True
        if self.target == "artifacts":
            return self._regex.match(key) is not None
        return self._regex.search(key) is not None

    def describe(self) -> str:
        """The rule as EXPLAIN shows it (never a key or value)."""
        if self.target == "datasets":
            text = "DATASETS SOURCES"
        else:
            name = self.target.upper() if self.target == "artifacts" else self.target
            text = f"{name} MATCHING '{(self.pattern or '').replace(chr(39), chr(39) * 2)}'"
        return text + (" HASH" if self.action == "hash" else "")


@dataclass(slots=True)
class Report:
    """What was redacted: counts by rule, for the export's result rows."""

    counts: Counter[str] = field(default_factory=Counter)
    #: the rules in the clause's order: each gets a row, also when it covered nothing
    order: tuple[str, ...] = ()

    def total(self) -> int:
        return sum(self.counts.values())

    def rows(self) -> list[dict[str, object]]:
        """One row per rule: its text and how many values, inputs or files it covered."""
        rules = dict.fromkeys([*self.order, *sorted(self.counts)])
        return [{"rule": rule, "redacted": self.counts[rule]} for rule in rules]


@dataclass(frozen=True, slots=True)
class Policy:
    """The REDACT clause of one CREATE SHARE; empty means nothing is redacted."""

    rules: tuple[Rule, ...] = ()
    key: bytes | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if any(r.action == "hash" for r in self.rules) and not self.key:
            raise ConfigurationError(
                "REDACT … HASH needs a provider key: set the redaction_key setting or "
                f"{KEY_ENV}",
                code="ARC320",
            )

    def explain(self) -> str:
        return "REDACT " + ", ".join(r.describe() for r in self.rules) if self.rules else ""

    def _hash(self, value: str, limit: int | None = None) -> str:
        """``hmac-sha256:<hex>``, cut to ``limit`` characters where a field is bounded (a
        dataset digest: 36, so 24 hex digits, 96 bits, stay)."""
        assert self.key is not None  # checked in __post_init__
        mac = hmac.new(self.key, value.encode("utf-8"), hashlib.sha256).hexdigest()
        return (_HASH_PREFIX + mac)[:limit]

    def apply(
        self, target: Target, entries: Mapping[str, str], report: Report
    ) -> tuple[dict[str, str], list[str]]:
        """``entries`` with covered keys dropped or hashed; also the redacted keys, sorted."""
        out: dict[str, str] = {}
        redacted: list[str] = []
        rules = [r for r in self.rules if r.target == target]
        for key, value in entries.items():
            rule = next((r for r in rules if r.matches(key)), None)
            if rule is None:
                out[key] = value
                continue
            redacted.append(key)
            report.counts[rule.describe()] += 1
            if rule.action == "hash":
                out[key] = self._hash(value)
        return out, sorted(redacted)

    def keep_artifact(self, path: str, report: Report) -> bool:
        """Whether an artifact file (run-relative path) is exported at all."""
        rule = next((r for r in self.rules if r.target == "artifacts" and r.matches(path)), None)
        if rule is not None:
            report.counts[rule.describe()] += 1
        return rule is None

    def dataset(self, entry: Record, report: Report) -> Record | None:
        """A dataset input with its source and digest dropped (``redacted``) or hashed; None
        when no rule covers datasets. Counted once per input."""
        rule = next((r for r in self.rules if r.target == "datasets"), None)
        if rule is None:
            return None
        report.counts[rule.describe()] += 1
        fix = self.digest_fix()
        assert fix is not None
        source = entry.get("source")
        return {
            **entry,
            "source": self._hash(source) if rule.action == "hash" and source else DROPPED,
            "digest": fix(entry.get("digest")),
        }

    def digest_fix(self) -> Callable[[str | None], str | None] | None:
        """What a dataset digest becomes (also where a metric names it), or None: kept."""
        rule = next((r for r in self.rules if r.target == "datasets"), None)
        if rule is None:
            return None
        if rule.action == "drop":
            return lambda d: DROPPED if d else d
        return lambda d: self._hash(d, MAX_DATASET_DIGEST_LENGTH) if d else d


def resolve_key(setting: str | None) -> bytes | None:
    """The provider's redaction key, from the ``redaction_key`` setting (which the settings
    read from ``ARCUATE_REDACTION_KEY``)."""
    return setting.encode("utf-8") if setting else None
