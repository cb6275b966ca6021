"""Import operators: shared runs or model versions into MLflow, validated first, re-runnable.

An import is a stream over record batches, in two passes:

1. **Validate and spool** (:mod:`.spool`, run here or in a helper process: :mod:`.ingest`,
   :mod:`.worker`). Every row is validated (:mod:`arcuate.format.validate`) and written to a
   temporary directory. Memory holds one batch and a small index, never the table. A bad row
   raises before anything is written.
2. **Write** (:mod:`.experiments`, :mod:`.models`). Records are matched to what the target
   already holds by provenance (the shared run or version an object was imported from,
   within the same provider, share and table: :mod:`arcuate.engine.provenance`) and their
   content hash: unchanged ones are checked (missing or altered files written again) and
   skipped, changed ones updated in place (or rebuilt when MLflow cannot change them in
   place), new ones added. Only a run's owner writes to it. The content hash is written
   last, so an interrupted import leaves records marked incomplete, and running it again
   finishes them without duplicates. Old runs/versions (replaced ones; with ``overwrite``,
   everything not shared) are deleted only after all new ones are in place, except runs a
   model version uses. This pass holds the target's import lease (``sink.lock``): two
   imports of one target never write at the same time.

The MLflow side is reached through ``ctx.model_sink``, a
:class:`~arcuate.backends.protocols.ModelSink`; the engine never reads or writes MLflow tags
itself. DESCRIBE of a shared table is :mod:`.describe`.
"""

from arcuate.engine.imports.describe import describe_shared
from arcuate.engine.imports.experiments import import_experiment, import_runs, keep_used
from arcuate.engine.imports.models import import_model
from arcuate.engine.imports.spool import Entry, Spool

__all__ = [
    "Entry",
    "Spool",
    "describe_shared",
    "import_experiment",
    "import_model",
    "import_runs",
    "keep_used",
]
