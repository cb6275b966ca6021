"""MLflow's tracking tables that arcuate reads and writes itself, as SQLAlchemy Core tables.

The columns are those of MLflow's own ORM models (``mlflow/store/tracking/dbmodels/models.py``)
at the schema revisions of :data:`~arcuate.backends.mlflow.sqlclient.COVERED_REVISIONS`, names and
types alike (``tests/imports/test_startup_sql.py`` compares them with MLflow's models), without
the ORM: importing this module costs SQLAlchemy Core only, not ``mlflow``. Only the tables of
experiments, runs and logged models are here; MLflow's client handles everything else.
"""

from __future__ import annotations

from typing import Final

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UnicodeText,
)

METADATA: Final = MetaData()

alembic_version: Final = Table(
    "alembic_version", METADATA, Column("version_num", String(32), primary_key=True)
)

experiments: Final = Table(
    "experiments",
    METADATA,
    Column("experiment_id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(256), nullable=False),
    Column("workspace", String(63), nullable=False),
    Column("artifact_location", String(256)),
    Column("lifecycle_stage", String(32)),
    Column("creation_time", BigInteger),
    Column("last_update_time", BigInteger),
)

experiment_tags: Final = Table(
    "experiment_tags",
    METADATA,
    Column("key", String(250), primary_key=True),
    Column("value", Text),
    Column("experiment_id", Integer, primary_key=True),
)

runs: Final = Table(
    "runs",
    METADATA,
    Column("run_uuid", String(32), primary_key=True),
    Column("name", String(250)),
    Column("source_type", String(20)),
    Column("source_name", String(500)),
    Column("entry_point_name", String(50)),
    Column("user_id", String(256)),
    Column("status", String(20)),
    Column("start_time", BigInteger),
    Column("end_time", BigInteger),
    Column("deleted_time", BigInteger),
    Column("source_version", String(50)),
    Column("lifecycle_stage", String(20)),
    Column("artifact_uri", String(200)),
    Column("experiment_id", Integer),
)

tags: Final = Table(
    "tags",
    METADATA,
    Column("key", String(250), primary_key=True),
    Column("value", String(8000)),
    Column("run_uuid", String(32), primary_key=True),
)

params: Final = Table(
    "params",
    METADATA,
    Column("key", String(250), primary_key=True),
    Column("value", String(8000), nullable=False),
    Column("run_uuid", String(32), primary_key=True),
)

metrics: Final = Table(
    "metrics",
    METADATA,
    Column("key", String(250), primary_key=True),
    Column("value", Float(precision=53), primary_key=True),
    Column("timestamp", BigInteger, primary_key=True),
    Column("step", BigInteger, primary_key=True),
    Column("is_nan", Boolean, primary_key=True),
    Column("run_uuid", String(32), primary_key=True),
)

latest_metrics: Final = Table(
    "latest_metrics",
    METADATA,
    Column("key", String(250), primary_key=True),
    Column("value", Float(precision=53), nullable=False),
    Column("timestamp", BigInteger),
    Column("step", BigInteger, nullable=False),
    Column("is_nan", Boolean, nullable=False),
    Column("run_uuid", String(32), primary_key=True),
)

datasets: Final = Table(
    "datasets",
    METADATA,
    Column("dataset_uuid", String(36), nullable=False),
    Column("experiment_id", Integer, primary_key=True),
    Column("name", String(500), primary_key=True),
    Column("digest", String(36), primary_key=True),
    Column("dataset_source_type", String(36), nullable=False),
    Column("dataset_source", UnicodeText, nullable=False),
    Column("dataset_schema", UnicodeText),
    Column("dataset_profile", UnicodeText),
)

inputs: Final = Table(
    "inputs",
    METADATA,
    Column("input_uuid", String(36), nullable=False),
    Column("source_type", String(36), primary_key=True),
    Column("source_id", String(36), primary_key=True),
    Column("destination_type", String(36), primary_key=True),
    Column("destination_id", String(36), primary_key=True),
    Column("step", BigInteger, nullable=False),
)

input_tags: Final = Table(
    "input_tags",
    METADATA,
    Column("input_uuid", String(36), primary_key=True),
    Column("name", String(255), primary_key=True),
    Column("value", String(500), nullable=False),
)

logged_models: Final = Table(
    "logged_models",
    METADATA,
    Column("model_id", String(36), primary_key=True),
    Column("experiment_id", Integer, nullable=False),
    Column("name", String(500), nullable=False),
    Column("artifact_location", String(1000), nullable=False),
    Column("creation_timestamp_ms", BigInteger, nullable=False),
    Column("last_updated_timestamp_ms", BigInteger, nullable=False),
    Column("status", Integer, nullable=False),
    Column("lifecycle_stage", String(32)),
    Column("model_type", String(500)),
    Column("source_run_id", String(32)),
    Column("status_message", String(1000)),
)

logged_model_params: Final = Table(
    "logged_model_params",
    METADATA,
    Column("model_id", String(36), primary_key=True),
    Column("experiment_id", Integer, nullable=False),
    Column("param_key", String(255), primary_key=True),
    Column("param_value", Text, nullable=False),
)

logged_model_tags: Final = Table(
    "logged_model_tags",
    METADATA,
    Column("model_id", String(36), primary_key=True),
    Column("experiment_id", Integer, nullable=False),
    Column("tag_key", String(255), primary_key=True),
    Column("tag_value", Text, nullable=False),
)

logged_model_metrics: Final = Table(
    "logged_model_metrics",
    METADATA,
    Column("model_id", String(36), primary_key=True),
    Column("metric_name", String(500), primary_key=True),
    Column("metric_timestamp_ms", BigInteger, primary_key=True),
    Column("metric_step", BigInteger, primary_key=True),
    Column("metric_value", Float(precision=53)),
    Column("experiment_id", Integer, nullable=False),
    Column("run_id", String(32), primary_key=True),
    Column("dataset_uuid", String(36)),
    Column("dataset_name", String(500)),
    Column("dataset_digest", String(36)),
)
