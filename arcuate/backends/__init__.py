"""The backends: one package per backend, each declaring its plug-in records in its
``__init__``; their contracts are :mod:`arcuate.backends.protocols`, their names are in
:mod:`arcuate.backends.registry`. Imports ``format`` and the bottom layer only (never
``plan``, ``syntax`` or ``engine``)."""
