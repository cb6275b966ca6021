"""MLflow prompts: reading a prompt's versions for export, and re-creating them on import.

A prompt is a registered model tagged ``mlflow.prompt.is_prompt`` that MLflow hides from the
model API; each version is a model version whose tags hold the template, its type, the
response format and the model config (research notes, issue 14, §1).

Reading goes through ``get_prompt`` / ``search_prompt_versions`` / ``get_prompt_version``
only: ``load_prompt`` and ``register_prompt`` have side effects (a background thread tags the
prompt with the global tracking URI's experiment). ``get_prompt_version`` is also the only read
that gives a version's aliases. Writing uses ``create_prompt`` / ``create_prompt_version``
(``register_prompt`` copies version tags onto the prompt and rewrites its description); a
version number MLflow cannot give back directly is reached with placeholder versions, created
then deleted (a soft delete: the number stays used), as for model versions.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final, cast

from arcuate.backends.mlflow.connect import error_code, every, mlflow_errors
from arcuate.backends.mlflow.tags import MAX_VERSION, SOURCE, is_managed
from arcuate.backends.protocols import Record
from arcuate.errors import ConflictError, NotFoundError, ShareDataError

if TYPE_CHECKING:
    from mlflow import MlflowClient

_PAGE: Final = 1000
#: Prompt-level tag keys MLflow manages (not the user's): never exported, never written.
_MANAGED: Final = ("mlflow.prompt.", "_mlflow_prompt_", "_mlflow_experiment_ids")
#: What a placeholder version holds (deleted at once; MLflow keeps the row, soft-deleted).
_PLACEHOLDER: Final = "arcuate placeholder: this version number is missing in the share"


def _user_tags(tags: dict[str, str] | None) -> dict[str, str]:
    """The user's tags: neither MLflow's prompt keys nor arcuate's own (provenance)."""
    return {
        k: v for k, v in (tags or {}).items() if not k.startswith(_MANAGED) and not is_managed(k)
    }


def _utc(ms: int | None) -> datetime | None:
    return None if ms is None else datetime.fromtimestamp(ms / 1000, tz=UTC)


def _is_model(client: MlflowClient, name: str) -> bool:
    from mlflow.exceptions import MlflowException

    try:
        client.get_registered_model(name)
        return True
    except MlflowException as exc:
        if error_code(exc) != "RESOURCE_DOES_NOT_EXIST":
            raise
        return False


def _numbers(client: MlflowClient, name: str) -> list[int]:
    found = every(
        lambda token: client.search_prompt_versions(name, max_results=_PAGE, page_token=token)
    )
    return sorted(int(pv.version) for pv in found)


def content(pv: Any) -> Record:
    """What a prompt version holds that an import keeps (and compares on re-import)."""
    return {
        "template": pv.template,
        "commit_message": pv.commit_message or None,
        "tags": _user_tags(pv.tags),
        "response_format": pv.response_format or None,
        "model_config": pv.model_config or None,
    }


def read_prompt_versions(
    client: MlflowClient, name: str, *, versions: Iterable[int] = (), aliases: Iterable[str] = ()
) -> list[Record]:
    """The ``prompt_version`` records of prompt ``name``, ascending: every live version, or
    the named versions and those the named aliases point at.

    Raises:
        NotFoundError: the prompt, a named version or an alias does not exist.
    """
    with mlflow_errors(f"could not read prompt {name!r}"):
        prompt = client.get_prompt(name)
        if prompt is None:
            raise NotFoundError(f"prompt {name!r} does not exist in the MLflow registry")
        live = _numbers(client, name)
        read = {n: client.get_prompt_version(name, n) for n in live}
    alias_map = {a: n for n, pv in read.items() for a in pv.aliases or ()}
    wanted = set(versions)
    for n in wanted - set(live):
        raise NotFoundError(f"prompt {name!r} has no version {n} (versions: {live})")
    for alias in aliases:
        if alias not in alias_map:
            raise NotFoundError(f"prompt {name!r} has no alias {alias!r}")
        wanted.add(alias_map[alias])
    chosen = sorted(wanted) if (wanted or tuple(aliases)) else live
    return [_record(prompt, read[n]) for n in chosen]


def _record(prompt: Any, pv: Any) -> Record:
    data = content(pv)
    chat = not pv.is_text_prompt
    return {
        "name": prompt.name,
        "prompt_description": prompt.description or None,
        "prompt_tags": [{"key": k, "value": v} for k, v in sorted(_user_tags(prompt.tags).items())],
        "version": int(pv.version),
        "template_type": "chat" if chat else "text",
        "template": json.dumps(pv.template) if chat else pv.template,
        "commit_message": data["commit_message"],
        "tags": [{"key": k, "value": v} for k, v in sorted(data["tags"].items())],
        "response_format": _json(data["response_format"]),
        "model_config": _json(data["model_config"]),
        "aliases": sorted(pv.aliases or ()),
        "creation_time": _utc(pv.creation_timestamp),
        "last_updated_time": _utc(pv.last_updated_timestamp),
        "user_id": pv.user_id or None,
    }


def _json(value: dict[str, Any] | None) -> str | None:
    return None if value is None else json.dumps(value, sort_keys=True)


# -- the recipient side -----------------------------------------------------------------------
def prompt_state(client: MlflowClient, name: str) -> Record | None:
    """Prompt ``name`` here: its description, user tags, live versions (number -> content),
    aliases (alias -> number) and ``top`` (the highest number used, deleted ones included);
    None when there is no such prompt.

    Raises:
        ConflictError: ``name`` is a registered model here (before anything is written).
    """
    with mlflow_errors(f"could not read prompt {name!r}"):
        if _is_model(client, name):
            raise ConflictError(
                f"{name!r} is a registered model in this registry; a prompt cannot be "
                "imported under its name",
                hint="import the prompt under another name",
            )
        prompt = client.get_prompt(name)
        if prompt is None:
            return None
        live = {n: client.get_prompt_version(name, n) for n in _numbers(client, name)}
        # numbers of deleted versions are not listed: arcuate's own tag remembers the highest
        # it used (a version someone else deleted is found when the number comes back wrong)
        top = max([*live, int(prompt.tags.get(MAX_VERSION, 0) or 0), 0])
    return {
        "description": prompt.description or None,
        "tags": _user_tags(prompt.tags),
        "versions": {n: content(pv) for n, pv in live.items()},
        "aliases": {a: n for n, pv in live.items() for a in pv.aliases or ()},
        "top": top,
    }


def write_prompt(
    client: MlflowClient,
    name: str,
    prompt: Record,
    versions: list[Record],
    *,
    state: Record | None,
    exact: bool,
    source: str,
    remove: list[int],
) -> None:
    """Create or update prompt ``name`` (``prompt``: description, tags), then create the new
    ``versions`` (ascending; each ``version`` number reached with placeholders), then set
    ``prompt["aliases"]`` (with ``exact``, removing the others), then delete the versions
    ``remove`` names.

    The caller has checked everything (numbers above ``state["top"]``, no version differing).
    """
    for record in versions:
        _check_model_config(record)
    with mlflow_errors(f"could not import prompt {name!r}"):
        top = _prepare(client, name, prompt, state, exact)
        for record in versions:
            top = _create_version(client, name, record, top)
            client.set_prompt_tag(name, MAX_VERSION, str(top))
        if source:
            client.set_prompt_tag(name, SOURCE, source)
        _set_aliases(client, name, prompt["aliases"], (state or {}).get("aliases", {}), exact)
        for number in remove:
            client.delete_prompt_version(name, str(number))


def _check_model_config(record: Record) -> None:
    """A version's model config is one MLflow accepts, and stores as shared (checked with
    MLflow's pydantic model, which holds data only), before anything is written."""
    from mlflow.entities.model_registry.prompt_version import PromptModelConfig
    from pydantic import ValidationError

    config = record.get("model_config")
    if config is None:
        return
    row, field = record.get("row"), "prompt_version.model_config"
    try:
        kept = PromptModelConfig.from_dict(config).to_dict()
    except (ValidationError, TypeError, ValueError) as exc:
        said = " ".join(str(exc).splitlines()[:3])
        raise ShareDataError(f"MLflow refuses it: {said}", row=row, field=field) from None
    if kept != config:
        raise ShareDataError("MLflow would not store it as shared", row=row, field=field)


def _prepare(
    client: MlflowClient, name: str, prompt: Record, state: Record | None, exact: bool
) -> int:
    tags: dict[str, str] = prompt["tags"]
    if state is None:
        client.create_prompt(name, description=prompt["description"], tags=tags or None)
        return 0
    if state["description"] != prompt["description"]:
        # MlflowClient has no call for a prompt's description; the registry client's
        # update_registered_model is the one MLflow's UI path uses (a prompt is a model row)
        registry = cast(Any, client)._get_registry_client()
        registry.update_registered_model(name, description=prompt["description"] or "")
    for key, value in tags.items():
        if state["tags"].get(key) != value:
            client.set_prompt_tag(name, key, value)
    if exact:
        for key in state["tags"]:
            if key not in tags:
                client.delete_prompt_tag(name, key)
    return int(state["top"])


def _create_version(client: MlflowClient, name: str, record: Record, top: int) -> int:
    """Version ``record["version"]`` after ``top`` (placeholders fill the numbers between)."""
    number = int(record["version"])
    while top + 1 < number:
        made = _new_version(client, name, {"template": _PLACEHOLDER}, top + 1)
        client.delete_prompt_version(name, str(made))
        top = made
    return _new_version(client, name, record, number)


def _new_version(client: MlflowClient, name: str, record: Record, wanted: int) -> int:
    pv = client.create_prompt_version(
        name,
        record["template"],
        description=record.get("commit_message"),
        tags=record.get("tags") or None,
        response_format=record.get("response_format"),
        model_config=record.get("model_config"),
    )
    made = int(pv.version)
    if made != wanted:
        # a version deleted here by someone else used the number: undo, and say so
        client.delete_prompt_version(name, str(made))
        raise ConflictError(
            f"prompt {name!r}: MLflow numbered the new version {made}, not {wanted} (a version "
            "was deleted here); version numbers cannot be kept",
            hint="import the prompt under another name",
        )
    return made


def _set_aliases(
    client: MlflowClient, name: str, wanted: dict[str, int], here: dict[str, int], exact: bool
) -> None:
    for alias, number in sorted(wanted.items()):
        if here.get(alias) != number:
            client.set_prompt_alias(name, alias, number)
    if exact:
        for alias in sorted(set(here) - set(wanted)):
            client.delete_prompt_alias(name, alias)
