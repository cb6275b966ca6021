"""The prompt part of the issue 14 torture fixture, and helpers to export and compare it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from arcuate.engine.context import Context

CHAT = [
    {"role": "system", "content": "You are a {{style}} assistant. ünïcødé ✓"},
    {"role": "user", "content": "{{question}}"},
]
RESPONSE_FORMAT = {
    "type": "object",
    "properties": {"answer": {"type": "string"}, "score": {"type": "number"}},
}
MODEL_CONFIG = {"model_name": "gpt-4o-mini", "temperature": 0.2, "max_tokens": 256}


def build_prompt(store: Any, name: str = "qa") -> None:
    """Prompt ``name``: versions 1, 2, 4 (3 deleted), text and chat templates, a response
    format, a model config, commit messages, prompt and version tags, two aliases."""
    client = store.client()
    client.create_prompt(name, description="answers questions", tags={"team": "ml", "tier": "1"})
    client.create_prompt_version(
        name, "Answer {{question}} briefly.", description="first", tags={"author": "ana"}
    )
    client.create_prompt_version(
        name,
        CHAT,
        description="chat form",
        tags={"author": "bo", "lang": "en"},
        response_format=RESPONSE_FORMAT,
        model_config=MODEL_CONFIG,
    )
    client.create_prompt_version(name, "to be deleted", description="gone")
    client.create_prompt_version(
        name, "Answer {{question}} in {{lang}}.", description="fourth", model_config=MODEL_CONFIG
    )
    client.delete_prompt_version(name, "3")
    client.set_prompt_alias(name, "production", 2)
    client.set_prompt_alias(name, "candidate", 4)


def prompt_snapshot(store: Any, name: str) -> dict[str, Any]:
    """What MLflow's public API shows of prompt ``name``: its fields and every live version's."""
    client = store.client()
    prompt = client.get_prompt(name)
    numbers = sorted(int(v.version) for v in client.search_prompt_versions(name))
    versions = {}
    for n in numbers:
        pv = client.get_prompt_version(name, n)
        versions[n] = {
            "template": pv.template,
            "is_text": pv.is_text_prompt,
            "commit_message": pv.commit_message,
            "tags": dict(pv.tags),
            "response_format": pv.response_format,
            "model_config": pv.model_config,
            "aliases": sorted(pv.aliases),
        }
    tags = {k: v for k, v in prompt.tags.items() if not k.startswith("arcuate.")}
    return {"description": prompt.description, "tags": tags, "versions": versions}


def export_prompt_to(ctx: Context, table: tuple[str, ...], name: str, **kw: Any) -> str:
    """Export prompt ``name`` with arcuate's exporter into a Delta table; its location."""
    from arcuate.engine.export import export_prompt
    from arcuate.plan.ops import ExportPrompt

    stream = export_prompt(ExportPrompt(name, **kw), ctx)
    return str(ctx.table_store.write(table, stream.batches, content=stream.content).location)


def snapshot(store: Any) -> dict[str, Any]:
    from tests.imports.import_helpers import whole_store

    return whole_store(store, store.root, Path.cwd() / "mlruns")
