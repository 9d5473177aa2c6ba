"""The data a stage ran on, logged as MLflow dataset inputs, so two runs' data can be told apart.

Each input is a file or folder; its digest is DVC's md5 from dvc.lock when the workspace copy still
has the size (and file count) dvc.lock recorded, which saves hashing big token and checkpoint files,
else a sha256 computed here (folders: over each file's relative path and bytes). A stage's inputs
are the data deps dvc.yaml declares for it; stages may also call `log_input_files` themselves.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from src.paths import PROJECT_ROOT

DATA_PREFIX = "data/"
MAX_DIGEST = 36  # MLflow's dataset digest column
CHUNK = 1 << 20
# Above this, an input dvc.lock does not vouch for is fingerprinted by its files' sizes and mtimes
# (algorithm "stat") rather than read whole: a stage must not spend minutes hashing a checkpoint.
MAX_HASHED_BYTES = 1 << 30


@dataclass(frozen=True)
class FileDigest:
    digest: str  # what MLflow shows (at most 36 characters)
    algorithm: str  # "md5" (DVC's, from dvc.lock), "sha256" (computed) or "stat" (sizes, mtimes)
    bytes: int
    files: int


def _walk(path: Path) -> Iterator[Path]:
    if path.is_file():
        yield path
        return
    yield from sorted(p for p in path.rglob("*") if p.is_file())


def size_and_count(path: Path) -> tuple[int, int]:
    files = list(_walk(path))
    return sum(f.stat().st_size for f in files), len(files)


def sha256_of(path: Path) -> str:
    """sha256 of a file's bytes; of a folder, over each file's relative path and bytes in order."""
    h = hashlib.sha256()
    for f in _walk(path):
        if path.is_dir():
            h.update(f.relative_to(path).as_posix().encode() + b"\0")
        with f.open("rb") as fh:
            while chunk := fh.read(CHUNK):
                h.update(chunk)
    return h.hexdigest()


def lock_entries(lock_file: Path) -> dict[str, dict[str, Any]]:
    """Path -> recorded hash entry from dvc.lock. Stage outputs win over deps: an upstream stage's
    out entry is rewritten when it runs, while a dep entry is that of this stage's previous run."""
    if not lock_file.is_file():
        return {}
    stages = (yaml.safe_load(lock_file.read_text(encoding="utf-8")) or {}).get("stages", {})
    entries: dict[str, dict[str, Any]] = {}
    for kind in ("deps", "outs"):
        for stage in stages.values():
            for entry in stage.get(kind, []) or []:
                if isinstance(entry, dict) and "path" in entry and "md5" in entry:
                    entries[entry["path"]] = entry
    return entries


def digest_of(path: Path, recorded: Mapping[str, Any] | None) -> FileDigest:
    size, count = size_and_count(path)
    if recorded and recorded.get("size") == size and recorded.get("nfiles", 1 if path.is_file() else None) == count:
        md5 = str(recorded["md5"]).removesuffix(".dir")
        return FileDigest(md5[:MAX_DIGEST], "md5", size, count)
    if size > MAX_HASHED_BYTES:
        h = hashlib.sha256()
        for f in _walk(path):
            st = f.stat()
            h.update(f"{f.relative_to(path) if path.is_dir() else f.name}:{st.st_size}:{st.st_mtime_ns}\n".encode())
        return FileDigest(h.hexdigest()[:32], "stat", size, count)
    return FileDigest(sha256_of(path)[:32], "sha256", size, count)


def stage_data_deps(stage: str, root: Path = PROJECT_ROOT) -> list[str]:
    """The data paths (under data/) dvc.yaml declares as the stage's deps; code deps are not data."""
    dvc_yaml = root / "dvc.yaml"
    if not dvc_yaml.is_file():
        return []
    stages = (yaml.safe_load(dvc_yaml.read_text(encoding="utf-8")) or {}).get("stages", {})
    deps = (stages.get(stage) or {}).get("deps", []) or []
    return [d for d in deps if isinstance(d, str) and d.startswith(DATA_PREFIX)]


def input_context(path: str, default: str) -> str:
    """How the UI labels an input: a model a stage starts from, the tokenizer, or its data."""
    if path.startswith("data/models/"):
        return "base_model"
    if path.startswith("data/tokenizer"):
        return "tokenizer"
    return default


def _dataset(name: str, source: str, found: FileDigest):  # noqa: ANN202 - mlflow is imported lazily
    from mlflow.data.meta_dataset import MetaDataset
    from mlflow.data.sources import LocalArtifactDatasetSource

    class FileDataset(MetaDataset):
        """A MetaDataset with a profile (size, file count, how the digest was made)."""

        @property
        def profile(self) -> dict[str, Any]:
            return {"bytes": found.bytes, "files": found.files, "digest": found.algorithm}

        def to_dict(self) -> dict[str, str]:
            return {**super().to_dict(), "profile": json.dumps(self.profile)}

    return FileDataset(LocalArtifactDatasetSource(source), name=name, digest=found.digest)


def log_input_files(paths: Mapping[str, Path], context: str, root: Path = PROJECT_ROOT,
                    lock: Mapping[str, Mapping[str, Any]] | None = None) -> dict[str, FileDigest]:
    """Log each existing file or folder as a dataset input of the active MLflow run, named by its key
    (`context`, the UI's label: training, base_model, ...); return what was logged. Missing paths
    are skipped: a stage that needed one has already failed with its own message."""
    import mlflow

    lock = lock_entries(root / "dvc.lock") if lock is None else lock
    logged: dict[str, FileDigest] = {}
    datasets, contexts = [], []
    for name, path in paths.items():
        path = Path(path)
        full = path if path.is_absolute() else root / path
        if not full.exists():
            continue
        try:
            key = full.resolve().relative_to(root.resolve()).as_posix()
        except ValueError:
            key = str(full)
        found = digest_of(full, lock.get(key))
        logged[name] = found
        datasets.append(_dataset(name, key, found))
        contexts.append(input_context(key, context))
    if datasets:
        mlflow.log_inputs(datasets=datasets, contexts=contexts, tags_list=[None] * len(datasets))
    return logged


def effective_paths(deps: list[str], declared: Mapping[str, Any], params: Mapping[str, Any]) -> dict[str, Path]:
    """dvc.yaml's data deps as this run reads them. `declared` are the stage's params as params.yaml
    has them (what dvc.yaml's paths go with), `params` those of this run: when a path-valued param
    differs (an override in `python -m src.run`, a test's temp folder), the dep it names moves with it."""
    found: dict[str, Path] = {}
    for dep in deps:
        target = dep
        for key, was in declared.items():
            now = params.get(key)
            if not isinstance(was, str) or not isinstance(now, str) or now == was:
                continue
            if dep == was or was.startswith(dep + "/"):
                # the param names the dep, or a file inside the dep folder: that is what is read
                target = now
                break
            if dep.startswith(was + "/"):  # the param names a folder holding the dep
                target = now + dep[len(was):]
                break
        found[target] = Path(target)
    return found


def log_stage_inputs(stage: str, declared: Mapping[str, Any], params: Mapping[str, Any], context: str,
                     root: Path = PROJECT_ROOT) -> dict[str, FileDigest]:
    """The stage's dvc.yaml data deps, as this run reads them, as inputs of the active run."""
    deps = stage_data_deps(stage, root)
    return log_input_files(effective_paths(deps, declared, params), context, root) if deps else {}


def stage_metric_files(stage: str, root: Path = PROJECT_ROOT) -> list[str]:
    """The `metrics:` files dvc.yaml declares for the stage (e.g. data/eval/metrics.json)."""
    dvc_yaml = root / "dvc.yaml"
    if not dvc_yaml.is_file():
        return []
    stages = (yaml.safe_load(dvc_yaml.read_text(encoding="utf-8")) or {}).get("stages", {})
    entries = (stages.get(stage) or {}).get("metrics", []) or []
    return [next(iter(e)) if isinstance(e, dict) else str(e) for e in entries]
