"""The shared table format, version 2: the contract between exporters and importers.

One Delta table holds one export. Each row is a record whose ``kind`` says what it is:

* ``run``: one MLflow run, self-contained: experiment, run info, params, tags, the full metric
  history, dataset inputs, MLflow 3 logged models, and its files (small files inline).
* ``model_version``: one registered-model version: the registered model's description, tags
  and aliases, the version's fields, its source run's metadata and its model files.
* ``chunk``: a bounded piece of a file too large to sit inline in its owner's ``files`` list.
* ``prompt_version`` (version 2): one version of an MLflow prompt, self-contained like a
  ``model_version``: the prompt's description and tags, the version's template, commit
  message, tags, response format, model config and aliases. A prompt table holds only these.
* ``scorer`` and ``eval_record`` (version 2, experiment tables): a registered scorer version
  (declarative only) and one record of an evaluation dataset linked to the experiment.

Version 2 appends nullable columns at the end of :data:`SCHEMA`; a version 1 table lacks them
and reads unchanged (:func:`conform`).

Every timestamp is timezone-aware UTC (``timestamp_ntz`` breaks Delta Sharing readers).
``docs/format.md`` documents every column; change both together and bump the version.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping
from typing import Final, Literal, TypeVar

import pyarrow as pa

FORMAT_VERSION: Final = 2
SUPPORTED_VERSIONS: Final = frozenset({1, 2})

Content = Literal["experiment", "model", "prompt"]
CONTENTS: Final = ("experiment", "model", "prompt")

RUN: Final = "run"
MODEL_VERSION: Final = "model_version"
CHUNK: Final = "chunk"
PROMPT_VERSION: Final = "prompt_version"
#: rows of an experiment table (format 2): a registered scorer version, an evaluation record
SCORER: Final = "scorer"
EVAL_RECORD: Final = "eval_record"
#: an MLflow trace with its spans and assessments (format 2, experiment tables)
TRACE: Final = "trace"

#: File owners inside a record: the run's artifacts, a logged model's files, a version's files.
OWNER_ARTIFACTS: Final = "artifacts"
OWNER_LOGGED_MODEL_PREFIX: Final = "logged_models/"
OWNER_MODEL: Final = "model"

TS = pa.timestamp("us", tz="UTC")

KV = pa.struct([("key", pa.string()), ("value", pa.string())])

METRIC = pa.struct(
    [
        ("key", pa.string()),
        ("value", pa.float64()),
        ("step", pa.int64()),
        ("timestamp", TS),
        ("model_id", pa.string()),
        ("dataset_name", pa.string()),
        ("dataset_digest", pa.string()),
    ]
)

DATASET_INPUT = pa.struct(
    [
        ("name", pa.string()),
        ("digest", pa.string()),
        ("source_type", pa.string()),
        ("source", pa.string()),
        ("schema", pa.string()),
        ("profile", pa.string()),
        ("tags", pa.list_(KV)),
    ]
)

LOGGED_MODEL = pa.struct(
    [
        ("model_id", pa.string()),
        ("name", pa.string()),
        ("model_type", pa.string()),
        ("status", pa.string()),
        ("status_message", pa.string()),
        ("creation_time", TS),
        ("step", pa.int64()),
        ("tags", pa.list_(KV)),
        ("params", pa.list_(KV)),
    ]
)

EXPERIMENT = pa.struct(
    [
        ("experiment_id", pa.string()),
        ("name", pa.string()),
        ("lifecycle_stage", pa.string()),
        ("tags", pa.list_(KV)),
    ]
)

RUN_INFO = pa.struct(
    [
        ("run_id", pa.string()),
        ("run_name", pa.string()),
        ("status", pa.string()),
        ("start_time", TS),
        ("end_time", TS),
        ("user_id", pa.string()),
        ("lifecycle_stage", pa.string()),
        ("parent_run_id", pa.string()),
        ("params", pa.list_(KV)),
        ("tags", pa.list_(KV)),
        ("metrics", pa.list_(METRIC)),
        ("inputs", pa.list_(DATASET_INPUT)),
        ("model_inputs", pa.list_(pa.string())),
        ("logged_models", pa.list_(LOGGED_MODEL)),
    ]
)

MODEL_VERSION_INFO = pa.struct(
    [
        ("name", pa.string()),
        ("model_description", pa.string()),
        ("model_tags", pa.list_(KV)),
        ("version", pa.int64()),
        ("description", pa.string()),
        ("tags", pa.list_(KV)),
        ("aliases", pa.list_(pa.string())),
        ("stage", pa.string()),
        ("status", pa.string()),
        ("status_message", pa.string()),
        ("creation_time", TS),
        ("last_updated_time", TS),
        ("user_id", pa.string()),
        ("source", pa.string()),
        ("run_id", pa.string()),
        ("run_link", pa.string()),
        ("model_id", pa.string()),
    ]
)

PROMPT_VERSION_INFO = pa.struct(
    [
        ("name", pa.string()),
        ("prompt_description", pa.string()),
        ("prompt_tags", pa.list_(KV)),
        ("version", pa.int64()),
        ("template_type", pa.string()),
        ("template", pa.string()),
        ("commit_message", pa.string()),
        ("tags", pa.list_(KV)),
        ("response_format", pa.string()),
        ("model_config", pa.string()),
        ("aliases", pa.list_(pa.string())),
        ("creation_time", TS),
        ("last_updated_time", TS),
        ("user_id", pa.string()),
    ]
)

#: A registered scorer version (format 2): declarative only (a built-in scorer or an
#: instruction judge), its MLflow serialization as JSON text (``arcuate.format.genai``).
SCORER_INFO = pa.struct(
    [
        ("experiment_key", pa.string()),
        ("name", pa.string()),
        ("version", pa.int64()),
        ("kind", pa.string()),
        ("serialized", pa.string()),
    ]
)

#: One record of an evaluation dataset (format 2), self-contained: the dataset's provider id,
#: name and tags ride on every record; the record's dict fields are JSON text.
EVAL_RECORD_INFO = pa.struct(
    [
        ("dataset_id", pa.string()),
        ("dataset_name", pa.string()),
        ("dataset_tags", pa.list_(KV)),
        ("record_id", pa.string()),
        ("inputs", pa.string()),
        ("outputs", pa.string()),
        ("expectations", pa.string()),
        ("tags", pa.string()),
        ("source", pa.string()),
    ]
)

#: One MLflow trace (format 2, in an experiment table): its ``TraceInfo.to_dict()`` (the
#: assessments inside) and its spans' ``Span.to_dict()`` list, each as JSON text, parsed with
#: ``json`` only. Spans are kept whole because their ids, parents and attributes only make
#: sense together (a trace is checked as one tree before anything is written).
TRACE_INFO = pa.struct(
    [
        ("experiment_key", pa.string()),
        ("trace_id", pa.string()),
        ("info", pa.string()),
        ("spans", pa.string()),
    ]
)

FILE = pa.struct(
    [
        ("owner", pa.string()),
        ("path", pa.string()),
        ("size", pa.int64()),
        ("sha256", pa.string()),
        ("data", pa.binary()),
        ("chunks", pa.int32()),
    ]
)

CHUNK_INFO = pa.struct(
    [
        ("owner", pa.string()),
        ("path", pa.string()),
        ("index", pa.int32()),
        ("offset", pa.int64()),
        ("data", pa.binary()),
    ]
)

SCHEMA: Final = pa.schema(
    [
        pa.field("format_version", pa.int32(), nullable=False),
        pa.field("kind", pa.string(), nullable=False),
        pa.field("key", pa.string(), nullable=False),
        pa.field("exported_at", TS),
        pa.field("experiment", EXPERIMENT),
        pa.field("run", RUN_INFO),
        pa.field("model_version", MODEL_VERSION_INFO),
        pa.field("files", pa.list_(FILE)),
        pa.field("chunk", CHUNK_INFO),
        # format 2: nullable, appended at the end (a version 1 table lacks them)
        pa.field("prompt_version", PROMPT_VERSION_INFO),
        pa.field("scorer", SCORER_INFO),
        pa.field("eval_record", EVAL_RECORD_INFO),
        pa.field("trace", TRACE_INFO),
    ]
)

#: The columns every table has (version 1's); the later ones may be missing.
REQUIRED_COLUMNS: Final = tuple(SCHEMA.names[: SCHEMA.get_field_index("chunk") + 1])

_Data = TypeVar("_Data", pa.RecordBatch, pa.Table)


def conform(data: _Data, partition_values: Mapping[str, str | None] | None = None) -> _Data:
    """``data``'s columns of the format, in :data:`SCHEMA`'s order, each cast to its type.

    What a sharing server, Spark or a Parquet file gives back holds the right values but not
    always the exact types (list item names, timestamp zones, integer widths) or name case, so
    names match without case. A column that does not cast is passed on as it is, for
    validation to name the offending row and field; a column ``data`` lacks stays missing
    (validation reports it) unless the table is partitioned by it: its value then comes from
    ``partition_values`` (a string in the Delta Sharing protocol). Other columns are dropped.
    """
    by_lower = {n.lower(): i for i, n in enumerate(data.schema.names)}
    parts = {k.lower(): v for k, v in (partition_values or {}).items()}
    fields: list[pa.Field] = []
    columns: list[pa.Array | pa.ChunkedArray] = []
    for f in SCHEMA:
        index = by_lower.get(f.name.lower())
        if index is not None:
            column = data.column(index)
        elif f.name.lower() in parts:
            column = pa.array([parts[f.name.lower()]] * data.num_rows, type=pa.string())
        else:
            continue
        if not column.type.equals(f.type):
            with contextlib.suppress(pa.ArrowException, ValueError, TypeError):
                column = column.cast(f.type)
        fields.append(f if column.type.equals(f.type) else pa.field(f.name, column.type))
        columns.append(column)
    return type(data).from_arrays(columns, schema=pa.schema(fields))


def table_description(content: Content) -> str:
    """The Delta table description that marks an arcuate table and its format version.

    Delta-rs refuses custom table properties, so the marker lives in the description, which
    Delta Sharing also serves to recipients in the table metadata.
    """
    return json.dumps({"arcuate": {"format_version": FORMAT_VERSION, "content": content}})


def parse_description(description: str | None) -> tuple[int, Content] | None:
    """The (format version, content) a table description declares, or None if not arcuate's."""
    if not description:
        return None
    try:
        doc = json.loads(description)
        marker = doc["arcuate"]
        version = int(marker["format_version"])
        content = marker["content"]
    except (ValueError, KeyError, TypeError):
        return None
    if content not in CONTENTS:
        return None
    return version, content
