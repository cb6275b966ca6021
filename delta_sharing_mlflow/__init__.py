"""The seed's module name: ``import delta_sharing_mlflow`` gives arcuate's Python API.

In IPython/Jupyter, importing it also puts the four verbs into the notebook's namespace, so
the seed's snippets (``import delta_sharing_mlflow`` then ``export_experiments(...)``) run as
written. In plain Python, use ``from delta_sharing_mlflow import export_experiments``.
"""

from __future__ import annotations

from arcuate.api import export_experiments, export_models, import_experiments, import_models

__all__ = ["export_experiments", "export_models", "import_experiments", "import_models"]


def _push_to_notebook() -> None:
    try:
        from IPython import get_ipython
    except ImportError:  # plain Python without IPython installed
        return
    shell = get_ipython()
    if shell is not None:
        shell.push({name: globals()[name] for name in __all__}, interactive=False)


_push_to_notebook()
