"""The workloads: how many runs, parameters, tags, metric points and file bytes each holds."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB


@dataclass(frozen=True)
class Shape:
    """One workload. ``versions`` > 0 makes it a registered-model workload: one run per version,
    whose ``model/`` directory (an ``MLmodel`` file and ``model_bytes`` of weights) is the
    version's source; otherwise it is an experiment of ``runs`` runs, each with ``files``."""

    name: str
    runs: int
    params: int
    tags: int
    metrics: int
    steps: int
    files: tuple[int, ...] = ()
    versions: int = 0
    model_bytes: int = 0

    @property
    def is_model(self) -> bool:
        return self.versions > 0

    @property
    def run_count(self) -> int:
        return self.versions if self.is_model else self.runs

    @property
    def points(self) -> int:
        """Metric points in the whole workload."""
        return self.run_count * self.metrics * self.steps

    @property
    def file_bytes(self) -> int:
        """Artifact bytes in the whole workload."""
        if self.is_model:
            return self.versions * (self.model_bytes + len(mlmodel_text(0)))
        return self.runs * sum(self.files)

    @property
    def file_count(self) -> int:
        return self.versions * 2 if self.is_model else self.runs * len(self.files)

    def describe(self) -> str:
        if self.is_model:
            return (
                f"registered model, {self.versions} versions x {human(self.model_bytes)} "
                f"(one run each: {self.params} params, {self.tags} tags, "
                f"{self.metrics} metrics x {self.steps} steps)"
            )
        files = " + ".join(human(n) for n in self.files) or "no files"
        return (
            f"{self.runs} runs x ({self.params} params, {self.tags} tags, "
            f"{self.metrics} metrics x {self.steps} steps, files {files})"
        )

    def to_json(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["files"] = list(self.files)
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Shape:
        return cls(**{**data, "files": tuple(data.get("files", ()))})


def mlmodel_text(version: int) -> bytes:
    """The small ``MLmodel`` file of a model-shape version (a plain-text description)."""
    return (
        "artifact_path: model\n"
        "flavors:\n"
        "  python_function:\n"
        "    loader_module: bench_loader\n"
        f"    data: model.bin\n"
        f"model_uuid: {version:032x}\n"
        "mlflow_version: 3.17.2\n"
    ).encode()


def human(n: float) -> str:
    """Bytes as a short human-readable size (KiB/MiB/GiB)."""
    for unit, size in (("GiB", GiB), ("MiB", MiB), ("KiB", KiB)):
        if n >= size:
            value = n / size
            return f"{value:.0f} {unit}" if value == int(value) else f"{value:.1f} {unit}"
    return f"{int(n)} B"


#: The full shapes of the performance issue.
SHAPES: dict[str, Shape] = {
    "bench-200": Shape("bench-200", 200, 20, 5, 10, 100, (1 * KiB, 10 * KiB)),
    "many-runs": Shape("many-runs", 5000, 5, 2, 3, 10, (1 * KiB,)),
    "big-file": Shape("big-file", 1, 5, 2, 3, 10, (1 * GiB,)),
    "model": Shape("model", 0, 5, 2, 3, 10, versions=20, model_bytes=50 * MiB),
}

#: Tiny versions that run in seconds (the smoke test); big-file still spans several chunks.
SMOKE: dict[str, Shape] = {
    "bench-200": Shape("bench-200", 3, 20, 5, 10, 10, (1 * KiB, 10 * KiB)),
    "many-runs": Shape("many-runs", 25, 5, 2, 3, 10, (1 * KiB,)),
    "big-file": Shape("big-file", 1, 5, 2, 3, 10, (20 * MiB,)),
    "model": Shape("model", 0, 5, 2, 3, 10, versions=2, model_bytes=1 * MiB),
}


def parse_size(text: str) -> int:
    """``10KiB``, ``50MiB``, ``1GiB``, ``1024`` -> bytes."""
    t = text.strip().lower().replace(" ", "")
    for suffix, factor in (
        ("gib", GiB),
        ("mib", MiB),
        ("kib", KiB),
        ("g", GiB),
        ("m", MiB),
        ("k", KiB),
        ("b", 1),
    ):
        if t.endswith(suffix):
            return int(float(t[: -len(suffix)]) * factor)
    return int(t)


def resolve(shape: str, /, *, smoke: bool = False, **overrides: Any) -> Shape:
    """A named shape (its smoke size with ``smoke``), with fields overridden (None = keep;
    ``name=`` renames it)."""
    table = SMOKE if smoke else SHAPES
    if shape not in table:
        raise SystemExit(f"unknown shape {shape!r}; known: {', '.join(SHAPES)}")
    base = table[shape]
    changes = {k: v for k, v in overrides.items() if v is not None}
    return dataclasses.replace(base, **changes) if changes else base
