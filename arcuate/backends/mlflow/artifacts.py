"""Imported files in MLflow artifact repositories: listed, compared and written byte for byte.

Both writers of an import use it: the public-API sink for runs and logged models it fills,
and the bulk writer for the files of new runs, uploaded before their rows are committed.
Repositories are always built from an artifact URI with explicit tracking and registry URIs,
never through ``runs:/`` or ``models:/`` resolution (which may consult the global URIs).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Final, TypeGuard

from arcuate.backends import spooled
from arcuate.backends.mlflow import objects
from arcuate.backends.protocols import Record

if TYPE_CHECKING:
    from mlflow.store.artifact.artifact_repo import ArtifactRepository
    from mlflow.store.artifact.local_artifact_repo import LocalArtifactRepository

#: A file MLflow itself writes into a model directory whenever ``models:/<name>/<version>`` is
#: downloaded from a local store: never an extra file of a model, never removed.
MLFLOW_MODEL_META: Final = "registered_model_meta"


def repository(uri: str, tracking_uri: str, registry_uri: str) -> ArtifactRepository:
    """The artifact repository at ``uri``: arcuate's own for ``s3://`` and local locations
    (:mod:`~arcuate.backends.mlflow.objects`, unless ``ARCUATE_MLFLOW_CLIENT=mlflow``),
    else MLflow's, built with both URIs explicit."""
    own = objects.repository(uri)
    if own is not None:
        return own  # type: ignore[return-value]  # the same methods, without MLflow
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    return get_artifact_repository(uri, tracking_uri=tracking_uri, registry_uri=registry_uri)


def is_local(repo: object) -> TypeGuard[LocalArtifactRepository]:
    """Whether ``repo`` is a local repository: arcuate's, or MLflow's
    ``LocalArtifactRepository`` (without importing it: its module is loaded when such a
    repository exists). Both have ``artifact_dir``."""
    if isinstance(repo, objects.LocalRepo):
        return True
    module = sys.modules.get("mlflow.store.artifact.local_artifact_repo")
    cls = getattr(module, "LocalArtifactRepository", None)
    return isinstance(cls, type) and isinstance(repo, cls)


def joined(prefix: str, path: str) -> str:
    """``path`` under ``prefix`` (none: the path itself)."""
    return f"{prefix}/{path}" if prefix else path


def list_files(repo: ArtifactRepository, path: str | None = None) -> dict[str, int | None]:
    """Every file under ``path`` of a repository, recursively: relative path -> size."""
    if isinstance(repo, objects.S3Repo):  # the whole tree in one listing
        return {info.path: info.file_size for info in repo.walk(path)}
    out: dict[str, int | None] = {}
    pending: list[str | None] = [path]
    while pending:
        for info in repo.list_artifacts(pending.pop()):
            if info.is_dir:
                pending.append(info.path)
            else:
                out[info.path.replace(os.sep, "/")] = info.file_size
    return out


def sha256_file(path: str) -> str:
    """The SHA-256 of a local file, read a MiB at a time."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def same_file(repo: ArtifactRepository, path: str, sha256: str) -> bool:
    """Whether the repository's file at ``path`` has these bytes (downloaded when remote)."""
    if is_local(repo):
        return sha256_file(os.path.join(repo.artifact_dir, *path.split("/"))) == sha256
    tmp = tempfile.mkdtemp(prefix="arcuate-compare-")
    try:
        local = repo.download_artifacts(path, dst_path=tmp)  # type: ignore[no-untyped-call]
        return sha256_file(local) == sha256
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def differing(
    repo: ArtifactRepository,
    files: list[Record],
    existing: dict[str, int | None],
    prefix: str,
    *,
    deep: bool | None,
) -> list[Record]:
    """The ``files`` a repository lacks or holds with another size, or (``deep``) other
    bytes; ``deep=None`` (checking files written before): the bytes only where they are
    local, and MLflow's own ``registered_model_meta`` only for being there (MLflow rewrites
    it whenever the model is loaded from a local store here)."""
    check = deep is None
    if deep is None:
        deep = is_local(repo)
    out = []
    for f in files:
        path = joined(prefix, f["path"])
        size = existing.get(path, -1)
        if check and f["path"] == MLFLOW_MODEL_META and size != -1:
            continue
        differs = size == -1 or (size is not None and size != f["size"])
        if differs or (deep and not same_file(repo, path, f["sha256"])):
            out.append(f)
    return out


def sync_files(
    repo: ArtifactRepository,
    files: list[Record],
    *,
    fresh: bool,
    prefix: str = "",
    prune: bool = False,
    deep: bool | None = True,
) -> tuple[int, int]:
    """Upload the files the repository lacks or holds with other bytes (``deep``: see
    :func:`differing`); with ``prune``, delete the other files under ``prefix``. How many
    files and bytes were written."""
    if not files and not prune:
        return 0, 0
    todo = files
    if not fresh:
        existing = list_files(repo, prefix or None)
        todo = differing(repo, files, existing, prefix, deep=deep)
        if prune:
            wanted = {joined(prefix, f["path"]) for f in files}
            keep = wanted | {joined(prefix, MLFLOW_MODEL_META)}
            for path in sorted(set(existing) - keep):
                repo.delete_artifacts(path)  # type: ignore[no-untyped-call]
    if todo:
        _upload(repo, todo, prefix)
    return len(todo), sum(int(f["size"]) for f in todo)


def _upload(repo: ArtifactRepository, files: list[Record], prefix: str) -> None:
    if is_local(repo):
        # what its log_artifacts does (copy2 into the artifact directory), without a
        # staging directory of links per call: paths are validated relative paths
        made: set[str] = set()
        for f in files:
            dest = os.path.join(repo.artifact_dir, *joined(prefix, f["path"]).split("/"))
            parent = os.path.dirname(dest)
            if parent not in made:
                os.makedirs(parent, exist_ok=True)
                made.add(parent)
            spooled.copy_to(f, dest)
        return
    if isinstance(repo, objects.S3Repo):  # each file straight to its key, no staging
        for f in files:
            repo.put_spooled(f, joined(prefix, f["path"]))
        return
    stage = _stage_files(files, prefix)
    try:
        repo.log_artifacts(stage)  # type: ignore[no-untyped-call]
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def _stage_files(files: list[Record], prefix: str = "") -> str:
    """A temporary directory holding ``files`` at their relative paths (hard links if possible)."""
    stage = tempfile.mkdtemp(prefix="arcuate-stage-")
    root = Path(stage)
    for f in files:
        dest = root.joinpath(*joined(prefix, f["path"]).split("/"))
        dest.parent.mkdir(parents=True, exist_ok=True)
        spooled.copy_to(f, str(dest), link=True)
    return stage


def remove_uploaded(repo: ArtifactRepository) -> None:
    """Take back the files uploaded under a run's or logged model's artifact root (best
    effort, for a batch whose rows were not committed)."""
    if is_local(repo):
        # <experiment>/<run id>/artifacts or <experiment>/models/<model id>/artifacts
        shutil.rmtree(os.path.dirname(repo.artifact_dir), ignore_errors=True)
    else:
        repo.delete_artifacts()  # type: ignore[no-untyped-call]
