"""Validation of a prompt table's rows (format 2, content ``prompt``).

A prompt table holds one ``prompt_version`` row per live version of one MLflow prompt. Each
row is checked on its own (:func:`parse_prompt_row`), then the rows together
(:func:`check_prompt_rows`): one prompt, each version once, each alias once, and at most
MAX_VERSION_PLACEHOLDERS missing numbers (each is recreated as a placeholder version, created
then deleted). Every check runs before the import writes anything.

A template, response format and model config are data: JSON is parsed with ``json`` (depth
counted first), never evaluated.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from arcuate.format import limits
from arcuate.format import validate as v
from arcuate.format.schema import (
    CHUNK,
    EVAL_RECORD,
    MODEL_VERSION,
    PROMPT_VERSION,
    RUN,
    SCORER,
    SUPPORTED_VERSIONS,
    TRACE,
)

#: MLflow's prompt name rule (``mlflow.prompt.constants.PROMPT_NAME_RULE``).
_NAME: Final = re.compile(r"^[a-zA-Z0-9_.-]+$")
TEMPLATE_TYPES: Final = frozenset({"text", "chat"})
#: Tag keys MLflow keeps for itself on a prompt or its versions: a user tag may not set them.
_RESERVED_PREFIXES: Final = ("mlflow.prompt.", "_mlflow_prompt_")
_RESERVED_KEYS: Final = frozenset({"_mlflow_experiment_ids"})


@dataclass
class SharedPrompt:
    """A validated ``prompt_version`` row, normalised (times in epoch ms, JSON parsed)."""

    row: int
    name: str
    description: str | None
    prompt_tags: dict[str, str]
    version: int
    template: str | list[dict[str, str]]
    commit_message: str | None
    tags: dict[str, str]
    response_format: dict[str, Any] | None
    model_config: dict[str, Any] | None
    aliases: list[str]
    creation_time: int | None


def check_prompt_name(name: Any, row: int | None = None, where: str = "prompt") -> str:
    """A prompt name, by MLflow's rule: letters, digits, '_', '-' and '.'."""
    value = v.required_text(name, row, where, limit=limits.MAX_MODEL_NAME_LENGTH)
    if not _NAME.match(value) or value in (".", ".."):
        raise v._fail(
            f"prompt name {v._show(value)} may only contain letters, digits, '_', '-' and '.'",
            row,
            where,
        )
    return value


def _user_key(value: Any, row: int | None, name: str) -> str:
    key = v.entity_key(value, row, name)
    if key.startswith(_RESERVED_PREFIXES) or key in _RESERVED_KEYS:
        raise v._fail(f"tag key {key!r} is reserved by MLflow for prompts", row, name)
    return key


def _json_object(value: Any, row: int, name: str) -> dict[str, Any] | None:
    raw = v.text(value, row, name, limit=limits.MAX_PROMPT_TEMPLATE_LENGTH)
    if raw is None:
        return None
    parsed = v.parse_json(raw, row, name)
    if not isinstance(parsed, dict):
        raise v._fail(f"must be a JSON object, got {type(parsed).__name__}", row, name)
    return parsed



def _chat(raw: str, row: int, name: str) -> list[dict[str, str]]:
    """Chat messages: a JSON list of ``{role, content}`` objects with string values."""
    messages = v.parse_json(raw, row, name)
    if not isinstance(messages, list) or not messages:
        raise v._fail("a chat template must be a non-empty JSON list of messages", row, name)
    if len(messages) > limits.MAX_CHAT_MESSAGES:
        raise v.too_many(len(messages), limits.MAX_CHAT_MESSAGES, row, name)
    for j, m in enumerate(messages):
        if (
            not isinstance(m, dict)
            or set(m) != {"role", "content"}
            or not all(isinstance(x, str) for x in m.values())
        ):
            raise v._fail(
                f"message {j} must be an object with string 'role' and 'content' only", row, name
            )
    return messages


def _template(pv: Mapping[str, Any], row: int) -> str | list[dict[str, str]]:
    kind = v.choice(pv.get("template_type"), row, "prompt_version.template_type", TEMPLATE_TYPES)
    raw = v.required_text(
        pv.get("template"), row, "prompt_version.template", limit=limits.MAX_PROMPT_TEMPLATE_LENGTH
    )
    return raw if kind == "text" else _chat(raw, row, "prompt_version.template")


def _aliases(value: Any, row: int) -> list[str]:
    items = v._sequence(value, row, "prompt_version.aliases", limit=limits.MAX_ALIASES)
    aliases = [v.check_alias(a, row, f"prompt_version.aliases[{j}]") for j, a in enumerate(items)]
    if len(set(aliases)) != len(aliases):
        raise v._fail("an alias is listed twice", row, "prompt_version.aliases")
    return aliases


def _prompt_version(value: Any, row: int) -> SharedPrompt:
    pv = v._struct(value, row, "prompt_version")
    tags = v.key_values(
        pv.get("tags"),
        row,
        "prompt_version.tags",
        value_limit=limits.MAX_VERSION_TAG_VALUE_LENGTH,
        key_check=_user_key,
    )
    return SharedPrompt(
        row=row,
        name=check_prompt_name(pv.get("name"), row, "prompt_version.name"),
        description=v.text(
            pv.get("prompt_description"),
            row,
            "prompt_version.prompt_description",
            limit=limits.MAX_DESCRIPTION_LENGTH,
        ),
        prompt_tags=v.key_values(
            pv.get("prompt_tags"),
            row,
            "prompt_version.prompt_tags",
            value_limit=limits.MAX_MODEL_TAG_VALUE_LENGTH,
            key_check=_user_key,
        ),
        version=v.integer(
            pv.get("version"), row, "prompt_version.version", low=1, high=limits.MAX_PROMPT_VERSIONS
        ),
        template=_template(pv, row),
        commit_message=v.text(
            pv.get("commit_message"),
            row,
            "prompt_version.commit_message",
            limit=limits.MAX_DESCRIPTION_LENGTH,
        ),
        tags=tags,
        response_format=_json_object(
            pv.get("response_format"), row, "prompt_version.response_format"
        ),
        model_config=_json_object(pv.get("model_config"), row, "prompt_version.model_config"),
        aliases=_aliases(pv.get("aliases"), row),
        creation_time=v.timestamp_ms(pv.get("creation_time"), row, "prompt_version.creation_time"),
    )


def parse_prompt_row(row: Mapping[str, Any], i: int) -> SharedPrompt:
    """Validate and normalise row ``i`` of a prompt table.

    Raises:
        ShareDataError: the row is malformed or hostile; names row ``i`` and the field.
    """
    version = row.get("format_version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 2:
        raise v._fail(
            f"format version {v._show(version)}: a prompt table is format 2 or later",
            i,
            "format_version",
        )
    if version not in SUPPORTED_VERSIONS:
        raise v._fail(
            f"format version {version} is not supported (this arcuate reads "
            f"{', '.join(map(str, sorted(SUPPORTED_VERSIONS)))}); upgrade arcuate",
            i,
            "format_version",
        )
    kind = row.get("kind")
    if kind != PROMPT_VERSION:
        known = (RUN, MODEL_VERSION, CHUNK, PROMPT_VERSION, SCORER, EVAL_RECORD, TRACE)
        what = "is not a kind this arcuate knows" if kind not in known else "is not a prompt's"
        raise v._fail(
            f"row kind {v._show(kind)} {what}: a prompt table holds prompt_version rows", i, "kind"
        )
    for column in ("scorer", "eval_record", "trace"):
        if not v._is_missing(row.get(column)):
            raise v._fail(f"a prompt table carries no {column}", i, column)
    out = _prompt_version(row.get("prompt_version"), i)
    if row.get("key") != str(out.version):
        raise v._fail(
            f"key {v._show(row.get('key'))} differs from prompt_version.version {out.version}",
            i,
            "key",
        )
    return out


def check_prompt_rows(rows: list[SharedPrompt]) -> None:
    """The rows together: one prompt (same name, description and tags on every row), each
    version and alias once, and at most MAX_VERSION_PLACEHOLDERS missing version numbers.

    Raises:
        ShareDataError: names the row and field of the first problem.
    """
    if not rows:
        return
    first = rows[0]
    seen: dict[int, int] = {}
    owners: dict[str, int] = {}
    for r in rows:
        for field, here, there in (
            ("name", r.name, first.name),
            ("prompt_description", r.description, first.description),
            ("prompt_tags", r.prompt_tags, first.prompt_tags),
        ):
            if here != there:
                raise v._fail(
                    f"differs from row {first.row}'s: a prompt table holds one prompt",
                    r.row,
                    f"prompt_version.{field}",
                )
        if r.version in seen:
            raise v._fail(
                f"version {r.version} is also in row {seen[r.version]}",
                r.row,
                "prompt_version.version",
            )
        seen[r.version] = r.row
        for alias in r.aliases:
            if alias in owners:
                raise v._fail(
                    f"alias {alias!r} also points at the version in row {owners[alias]}",
                    r.row,
                    "prompt_version.aliases",
                )
            owners[alias] = r.row
    _check_gaps([(r.row, r.version) for r in rows])


def _check_gaps(versions: list[tuple[int, int]]) -> None:
    """At most MAX_VERSION_PLACEHOLDERS numbers missing below the versions: each costs two
    MLflow calls (a placeholder version, then its deletion)."""
    missing = previous = 0
    for row, number in sorted(versions, key=lambda rv: rv[1]):
        missing += max(0, number - previous - 1)
        previous = number
        if missing > limits.MAX_VERSION_PLACEHOLDERS:
            raise v._fail(
                f"version {number} leaves {missing} numbers below it unused; an import "
                "recreates each as a placeholder prompt version (MLflow numbers versions in "
                f"order), at most {limits.MAX_VERSION_PLACEHOLDERS} per prompt table",
                row,
                "prompt_version.version",
            )
