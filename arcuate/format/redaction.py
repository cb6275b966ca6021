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
import os
import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from arcuate.errors import ConfigurationError

Target = Literal["params", "tags", "artifacts", "datasets"]
Action = Literal["drop", "hash"]

#: the tag an exported run carries: the keys whose values were redacted (never the values)
REDACTED_TAG = "arcuate.redacted"
#: the environment variable holding the provider's redaction key
KEY_ENV = "ARCUATE_REDACTION_KEY"
_HASH_PREFIX = "hmac-sha256:"


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

    def rows(self) -> list[dict[str, object]]:
        return [{"rule": rule, "redacted": n} for rule, n in sorted(self.counts.items())]


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

    def _hash(self, value: str) -> str:
        assert self.key is not None  # checked in __post_init__
        mac = hmac.new(self.key, value.encode("utf-8"), hashlib.sha256).hexdigest()
        return _HASH_PREFIX + mac

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

    def dataset_source(self, source: str, report: Report) -> str | None:
        """A dataset input's source (or digest): None when dropped, hashed, or as it was."""
        rule = next((r for r in self.rules if r.target == "datasets"), None)
        if rule is None:
            return source
        report.counts[rule.describe()] += 1
        return self._hash(source) if rule.action == "hash" else None


def resolve_key(setting: str | None = None) -> bytes | None:
    """The provider's redaction key: the setting, else ``ARCUATE_REDACTION_KEY``."""
    value = setting or os.environ.get(KEY_ENV)
    return value.encode("utf-8") if value else None
