"""IPython magics: thin wrappers, each one call into :func:`arcuate.execute`.

``%load_ext arcuate`` registers ``%%arcuate``/``%arcuate`` (any statements) and the seed's four
cell magics, which accept only their own kind of statement. Settings come from the
environment or from ``%config ArcuateMagics.warehouse = '...'`` and friends.
"""

from __future__ import annotations

from typing import Any

from IPython.core.magic import Magics, cell_magic, line_cell_magic, magics_class
from traitlets import Unicode

import arcuate
from arcuate.engine.result import Results


@magics_class
class ArcuateMagics(Magics):
    """The arcuate magics; traits are settings passed to every statement."""

    tracking_uri = Unicode(None, allow_none=True, help="MLflow tracking URI").tag(config=True)
    registry_uri = Unicode(None, allow_none=True, help="MLflow registry URI").tag(config=True)
    warehouse = Unicode(None, allow_none=True, help="where Delta tables are written").tag(
        config=True
    )
    catalog = Unicode(None, allow_none=True, help="the local share catalog file").tag(config=True)
    endpoint = Unicode(None, allow_none=True, help="sharing server URL for profiles").tag(
        config=True
    )

    def _run(self, text: str, expect: str | None = None) -> Results:
        names = ("tracking_uri", "registry_uri", "warehouse", "catalog", "endpoint")
        settings: dict[str, Any] = {n: getattr(self, n) for n in names if getattr(self, n)}
        return arcuate.execute(text, source="<cell>", expect=expect, **settings)

    @line_cell_magic
    def arcuate(self, line: str, cell: str | None = None) -> Results:
        """Run any arcuate statements (the line, or the whole cell)."""
        return self._run(cell if cell is not None else line)

    @cell_magic
    def arcuate_export_experiment(self, line: str, cell: str) -> Results:
        """CREATE SHARE s WITH TABLE t FROM EXPERIMENT e"""
        return self._run(cell, "export_experiment")

    @cell_magic
    def arcuate_export_model(self, line: str, cell: str) -> Results:
        """CREATE SHARE s WITH TABLE t FROM MODEL m"""
        return self._run(cell, "export_model")

    @cell_magic
    def arcuate_import_experiment(self, line: str, cell: str) -> Results:
        """CREATE EXPERIMENT [OVERWRITE] e AS [PANDAS|SPARK] 'profile#share.schema.table'"""
        return self._run(cell, "import_experiment")

    @cell_magic
    def arcuate_import_model(self, line: str, cell: str) -> Results:
        """CREATE MODEL [OVERWRITE] m AS [PANDAS|SPARK] 'profile#share.schema.table'"""
        return self._run(cell, "import_model")


def register(ipython: Any) -> None:
    """Register the magics with an IPython shell."""
    ipython.register_magics(ArcuateMagics)
