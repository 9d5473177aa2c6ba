"""Every module a DVC stage runs is one of its deps, so editing it makes `dvc repro` rerun the stage.

For each stage in dvc.yaml, the `src` modules reachable from its entry point (stages/<name>.py and
the function src/pipeline.py names for it) are collected by reading imports statically with `ast`,
function-local imports included, and each module's file must lie under one of the stage's deps.
Generic: a stage added to dvc.yaml is checked the same way.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

from src.paths import PROJECT_ROOT
from src.pipeline import STAGES

# The runner around every stage: config validation and composition, the MLflow run and the summary.
# They decide neither what a stage reads nor what it writes (its parameter values reach it through
# params.yaml, which DVC tracks per stage as `params`), so they are not followed: listing them would
# rerun every stage on any edit there. Config *sections* imported by stage code are followed.
RUNNER_MODULES = frozenset({"src.stage", "src.tracking", "src.tracking_inputs", "src.tracking_pipeline",
                            "src.pipeline", "src.config", "src.config.schema", "src.config.__main__"})


def module_file(name: str) -> Path | None:
    base = PROJECT_ROOT.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def is_type_checking_block(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def imported_names(path: Path, module: str) -> set[str]:
    """Absolute names of every module `path` imports (at any depth, except under TYPE_CHECKING):
    `from a import b` yields `a` and, when it is a module, `a.b`."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    skipped = {id(n) for block in ast.walk(tree) if is_type_checking_block(block)
               for n in ast.walk(block)}
    names: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return {n for n in names if n == "src" or n.startswith("src.")}


def has_code(path: Path) -> bool:
    """False for a package __init__ holding only a docstring (and `from __future__`)."""
    body = ast.parse(path.read_text(encoding="utf-8")).body
    return any(not (isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant))
               and not (isinstance(n, ast.ImportFrom) and n.module == "__future__") for n in body)


def module_closure(roots: list[str]) -> dict[str, Path]:
    """Every src module (name -> file) the roots import, transitively; importing `a.b.c` also runs
    the packages `a` and `a.b`, which count when their __init__ holds code."""
    seen: dict[str, Path] = {}
    todo = list(roots)
    while todo:
        name = todo.pop()
        if name in seen or name in RUNNER_MODULES:
            continue
        path = module_file(name)
        if path is None:
            continue  # `from package import function`: the name is not a module
        parents = [".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 1)]
        todo.extend(parents)
        if path.name == "__init__.py" and not has_code(path):
            continue
        seen[name] = path
        todo.extend(imported_names(path, name))
    return seen


def stage_roots(name: str) -> list[str]:
    roots = [f"stages.{name}"]
    if name in STAGES:
        roots.append(STAGES[name].target.partition(":")[0])
    return roots


def covered(path: Path, deps: list[str]) -> bool:
    rel = path.relative_to(PROJECT_ROOT)
    return any(rel == Path(dep) or Path(dep) in rel.parents for dep in deps)


DVC_STAGES = yaml.safe_load((PROJECT_ROOT / "dvc.yaml").read_text(encoding="utf-8"))["stages"]


@pytest.mark.parametrize("stage", sorted(DVC_STAGES))
def test_stage_deps_cover_the_code_it_runs(stage: str) -> None:
    deps = [str(d) for d in DVC_STAGES[stage].get("deps", [])]
    closure = module_closure(stage_roots(stage))
    assert f"stages.{stage}" in closure, f"stages/{stage}.py not found"
    missing = sorted(str(p.relative_to(PROJECT_ROOT)) for p in closure.values() if not covered(p, deps))
    assert not missing, f"dvc.yaml stage {stage!r} runs code that is not among its deps: {missing}"


def test_the_closure_follows_local_relative_and_package_imports(tmp_path: Path) -> None:
    """The import reader itself, on the pretrain stage whose gaps the issue named."""
    closure = module_closure(stage_roots("pretrain"))
    assert "src.generation.sampling" in closure  # imported by a callback
    assert "src.tokenizers" in closure  # a function-local import in pretrain.load_sampler
    assert "src.config.sections.pretrain" in closure and "src.config" not in closure
    assert "src.data" not in closure  # a docstring-only package __init__
    tree = tmp_path / "pkg.py"
    tree.write_text("def f():\n    from .sub import thing\n    import src.models.gpt\n", encoding="utf-8")
    assert imported_names(tree, "src.training.pkg") == {
        "src.training.sub", "src.training.sub.thing", "src.models.gpt"}
