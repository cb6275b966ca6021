"""Every bound arcuate puts on what a share may hold, in one place.

A shared table is hostile until checked: any count, size, number, length or depth in it that
would drive a loop or an allocation is checked against a bound here *before* it does, and a
value beyond its bound is a :class:`~arcuate.errors.ShareDataError` naming the row and field.
Where MLflow has a limit of its own, the bound is MLflow's (an import must never ask MLflow
for more than it stores, and arcuate never truncates). Where MLflow has none, the bound is
generous: far above what real experiments hold, low enough that one row cannot make an
importer allocate gigabytes. ``docs/format.md`` and ``docs/sharing.md`` list them.

Memory is the reason for most of them: a run's list items cost about ten times more as Python
values than in Arrow (a metric point: ~40 bytes in Arrow, ~400 as a dict), so list lengths
are checked on Arrow's own lengths before a row becomes Python values
(:func:`arcuate.format.columns.check_list_bounds`).

This module imports only the standard library.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Final

# -- string lengths: MLflow's (mlflow/utils/validation.py and its SQL column sizes) -------------
MAX_KEY_LENGTH: Final = 250
MAX_PARAM_VALUE_LENGTH: Final = 6000
MAX_TAG_VALUE_LENGTH: Final = 8000
MAX_EXPERIMENT_NAME_LENGTH: Final = 500
MAX_EXPERIMENT_TAG_VALUE_LENGTH: Final = 20000
MAX_RUN_NAME_LENGTH: Final = 250
MAX_USER_ID_LENGTH: Final = 256
MAX_MODEL_NAME_LENGTH: Final = 256
MAX_DESCRIPTION_LENGTH: Final = 5000
MAX_MODEL_TAG_VALUE_LENGTH: Final = 5000
MAX_VERSION_TAG_VALUE_LENGTH: Final = 100_000
MAX_ALIAS_LENGTH: Final = 255
MAX_RUN_LINK_LENGTH: Final = 500
MAX_SOURCE_LENGTH: Final = 500
MAX_DATASET_NAME_LENGTH: Final = 500
MAX_DATASET_DIGEST_LENGTH: Final = 36
MAX_DATASET_SOURCE_TYPE_LENGTH: Final = 36
MAX_DATASET_SOURCE_LENGTH: Final = 65535
MAX_DATASET_SCHEMA_LENGTH: Final = 1_048_575
MAX_DATASET_PROFILE_LENGTH: Final = 16_777_215
MAX_INPUT_TAG_KEY_LENGTH: Final = 255
MAX_INPUT_TAG_VALUE_LENGTH: Final = 500
MAX_STATUS_MESSAGE_LENGTH: Final = 500
MAX_MODEL_TYPE_LENGTH: Final = 500
#: File paths: the longest path most file systems take; a segment: their longest file name.
MAX_PATH_LENGTH: Final = 1024
MAX_SEGMENT_BYTES: Final = 255

# -- numbers -------------------------------------------------------------------------------------
#: Timestamps fall between the epoch (MLflow rejects negative ones) and this date.
MAX_TIMESTAMP: Final = datetime(2500, 1, 1, tzinfo=UTC)
MAX_INT64: Final = 2**63 - 1
#: Version numbers: MLflow's ``model_versions.version`` is a 32-bit integer column.
MAX_VERSION: Final = 2**31 - 1
#: MLflow numbers a new version (highest ever used) + 1, so an import recreates each missing
#: number below a shared version as a placeholder version, created and deleted at once (three
#: MLflow calls: 25 to 115 ms per placeholder on sqlite). The missing numbers of one model
#: table add up to at most this many: 1,000 placeholders take half a minute to two minutes;
#: 10**9 of them would never end.
MAX_VERSION_PLACEHOLDERS: Final = 1000

# -- list lengths (counted in Arrow before a row becomes Python values) --------------------------
#: Metric points of one run, its full history: the quota of Databricks' managed MLflow ("total
#: metric steps per run"). OSS MLflow has none; a million points are ~400 MB as Python dicts.
MAX_METRIC_POINTS_PER_RUN: Final = 1_000_000
#: Params, and tags, of one run, logged model, experiment, registered model or version.
#: Databricks' MLflow allows 1,600 params and 1,600 tags per run; OSS MLflow has no limit.
MAX_PARAMS: Final = 10_000
MAX_TAGS: Final = 10_000
#: Dataset inputs, model inputs and logged models of one run. MLflow takes at most 1,000
#: datasets per ``log_inputs`` call (arcuate sends them in such calls) and has no total.
MAX_DATASET_INPUTS: Final = 10_000
MAX_MODEL_INPUTS: Final = 10_000
MAX_LOGGED_MODELS: Final = 10_000
#: Tags of one dataset input (MLflow sets one, ``mlflow.data.context``).
MAX_INPUT_TAGS: Final = 1000
#: Aliases pointing at one version.
MAX_ALIASES: Final = 1000
#: Files of one record (a run's artifacts and its logged models' files, or a version's).
MAX_FILES_PER_RECORD: Final = 100_000

# -- sizes ---------------------------------------------------------------------------------------
#: One chunk row's bytes, and one inline file's: 32 times the 8 MiB default chunk size. The
#: exporter's ``chunk_bytes`` setting is bounded by the same number.
MAX_CHUNK_BYTES: Final = 256 * 1024 * 1024
#: Chunk rows of one file: 8 TiB at the default chunk size, 1 GiB at the smallest (1 KiB).
MAX_CHUNKS_PER_FILE: Final = 1 << 20
#: One file's size: S3's largest object (5 TiB), the largest artifact most stores hold.
MAX_FILE_BYTES: Final = 5 * 1024**4

# -- the sharing server's answers (arcuate's protocol client) ----------------------------------
#: One line of an NDJSON answer (a metaData line holds the table's schema, a file line a signed
#: URL and the file's statistics), and one listing page: kilobytes in practice.
MAX_SHARING_LINE_BYTES: Final = 8 * 1024 * 1024
#: A whole answer to a table query, and the files it may list (arcuate writes a table in a few
#: files; each listed file costs about a kilobyte as Python values).
MAX_SHARING_ANSWER_BYTES: Final = 512 * 1024 * 1024
MAX_SHARED_TABLE_FILES: Final = 100_000

# -- prompts (format 2) ---------------------------------------------------------------------------
#: A prompt's template (text, or chat messages as JSON) is stored in a version tag, so its
#: bound is the version tag value's; its response format and model config too.
MAX_PROMPT_TEMPLATE_LENGTH: Final = MAX_VERSION_TAG_VALUE_LENGTH
#: Versions (rows) of one prompt table; gaps below them are bounded by
#: MAX_VERSION_PLACEHOLDERS, as for a model table.
MAX_PROMPT_VERSIONS: Final = 10_000
#: Messages of one chat template.
MAX_CHAT_MESSAGES: Final = 10_000
#: A prompt table is validated in memory (it has no files to spool): its Arrow bytes, summed
#: over its batches before any becomes Python values, stay below this (a real prompt's
#: versions take kilobytes; 10,000 versions of 100,000-character templates take ~1 GB).
MAX_PROMPT_TABLE_BYTES: Final = 256 * 1024 * 1024

# -- depth ---------------------------------------------------------------------------------------
#: Nesting of a JSON value arcuate parses from a share (the ``mlflow.log-model.history`` tag,
#: whose ``run_id`` fields are mapped). Python's parser recurses and fails near 1,000 levels;
#: MLflow writes 3.
MAX_JSON_DEPTH: Final = 64

# -- evaluation datasets and scorers (format 2) ----------------------------------------------------
#: Records of one evaluation dataset in a table (each is one row; MLflow upserts them one
#: SELECT each), and datasets per table.
MAX_EVAL_RECORDS: Final = 1_000_000
MAX_EVAL_DATASETS: Final = 1000
#: A record's inputs, outputs, expectations, tags and source together (JSON text).
MAX_EVAL_RECORD_BYTES: Final = 1024 * 1024
#: MLflow's ``evaluation_datasets.name`` and tag columns.
MAX_EVAL_DATASET_NAME_LENGTH: Final = 255
MAX_EVAL_TAG_KEY_LENGTH: Final = 255
MAX_EVAL_TAG_VALUE_LENGTH: Final = 5000
#: A serialized scorer (MLflow stores it as TEXT; a real one takes a few kilobytes), its JSON
#: nesting, its name, and the versions of scorers a table holds.
MAX_SCORER_BYTES: Final = 1024 * 1024
MAX_SCORER_JSON_DEPTH: Final = 32
MAX_SCORER_NAME_LENGTH: Final = 256
MAX_SCORER_VERSIONS: Final = 10_000

#: The bound of each list of the format, by its field path (``[]``: every item of a list).
LIST_LIMITS: Final[dict[str, int]] = {
    "files": MAX_FILES_PER_RECORD,
    "experiment.tags": MAX_TAGS,
    "run.params": MAX_PARAMS,
    "run.tags": MAX_TAGS,
    "run.metrics": MAX_METRIC_POINTS_PER_RUN,
    "run.inputs": MAX_DATASET_INPUTS,
    "run.inputs[].tags": MAX_INPUT_TAGS,
    "run.model_inputs": MAX_MODEL_INPUTS,
    "run.logged_models": MAX_LOGGED_MODELS,
    "run.logged_models[].tags": MAX_TAGS,
    "run.logged_models[].params": MAX_PARAMS,
    "model_version.model_tags": MAX_TAGS,
    "model_version.tags": MAX_TAGS,
    "model_version.aliases": MAX_ALIASES,
    "prompt_version.prompt_tags": MAX_TAGS,
    "prompt_version.tags": MAX_TAGS,
    "prompt_version.aliases": MAX_ALIASES,
    "eval_record.dataset_tags": MAX_TAGS,
}

# -- traces (format 2, issue 14) ---------------------------------------------------------------
#: Spans in one trace: 5,000 round-tripped on sqlite and over REST (research NOTES §2.2).
MAX_TRACE_SPANS: Final = 5_000
#: One span attribute's JSON text: 32 MiB round-tripped; 8 MiB leaves room for many per trace.
MAX_SPAN_ATTRIBUTE_LENGTH: Final = 8 * 1024 * 1024
MAX_SPAN_ATTRIBUTES: Final = 1_000
MAX_SPAN_EVENTS: Final = 1_000
#: A trace row's JSON texts (info, spans) together, read before parsing.
MAX_TRACE_JSON_LENGTH: Final = 256 * 1024 * 1024
MAX_TRACE_ASSESSMENTS: Final = 1_000
#: MLflow's REST layer truncates trace metadata keys/values to 250 and tag values to 4,096
#: characters (NOTES §2.2): refused above these rather than silently cut.
MAX_TRACE_METADATA_LENGTH: Final = 250
MAX_TRACE_TAG_VALUE_LENGTH: Final = 4_096
MAX_TRACE_PREVIEW_LENGTH: Final = 1_000
