"""Benchmarks of arcuate against MLflow's own public-API floor (not part of the unit suite).

``python -m benchmarks <shape> [<shape> ...] [--smoke]`` generates a deterministic source
MLflow store for each shape, then measures, each in its own process: the MLflow public-API
read and write floor, arcuate's export, serving through arcuate's sharing server to the real
``delta_sharing`` client, and arcuate's import. See ``docs/performance.md``.

Modules: :mod:`benchmarks.shapes` (what each workload holds), :mod:`benchmarks.workload`
(building the source store), :mod:`benchmarks.phases` (the measured steps, run as child
processes), :mod:`benchmarks.runner` (orchestration, peak RSS, the table of figures).
``benchmarks/serve_load.py`` is a separate load test of the sharing server;
``python -m benchmarks startup`` (:mod:`benchmarks.startup`) times the command's start-up.
``python -m benchmarks production`` (:mod:`benchmarks.production`, seeding and checks in
:mod:`benchmarks.prod_workload`) measures arcuate and the peer between PostgreSQL-backed
``mlflow server`` processes with artifacts in S3 (:mod:`benchmarks.topology`).
"""
