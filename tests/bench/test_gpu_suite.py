"""The GPU suite (src/bench/gpu_suite): its dry run end to end without hydra/mlflow/polars/dvc, the
guard around each part (a failure or timeout is recorded and the next part runs), results written
after every part, and the Hydra-free composer matching Hydra."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from src.bench.gpu_suite import PARTS
from src.bench.gpu_suite.runner import Part, PartContext, part_limits, read_partial, run_suite
from src.bench.gpu_suite.summary import render_summary
from src.paths import PROJECT_ROOT

BLOCKED = ["mlflow", "polars", "dvc", "hydra"]
# Runs the suite with the packages the device lacks made unimportable (sitecustomize-free: a finder
# placed first on sys.meta_path before the suite's own imports).
BLOCKING_MAIN = """
import importlib.abc, sys
class Blocked(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in {blocked!r}:
            raise ImportError("blocked on the device: " + name)
        return None
sys.meta_path.insert(0, Blocked())
from src.bench.gpu_suite.__main__ import main
sys.exit(main(sys.argv[1:]))
"""


def test_dry_run_every_part_ok_without_hydra_mlflow_polars_dvc(tmp_path: Path) -> None:
    out = tmp_path / "suite"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    began = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", BLOCKING_MAIN.format(blocked=BLOCKED), "--out", str(out),
                           "--dry-run"], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=300)
    seconds = time.perf_counter() - began
    results = json.loads((out / "results.json").read_text(encoding="utf-8"))
    statuses = {name: entry["status"] for name, entry in results["parts"].items()}
    assert statuses == {p.name: "ok" for p in PARTS}, (statuses, proc.stderr[-3000:])
    assert proc.returncode == 0
    parts = results["parts"]
    assert parts["pretrain"]["dialog48m"]["best"]["tokens_per_s"] > 0
    assert parts["pretrain"]["gpt2_124m"]["trials"]
    profile = parts["pretrain"]["profile"]
    assert "profile_error" not in parts["pretrain"]
    assert profile["micro_batch"] == parts["pretrain"]["dialog48m"]["best"]["micro_batch"]
    assert profile["top_ops"] and all(0 <= op["share"] <= 1 and op["self_ms"] > 0 and op["calls"] > 0
                                      for op in profile["top_ops"])
    assert 0 <= profile["matmul_share"] <= 1 and profile["step_ms"] > 0 and profile["bottleneck"]
    assert profile["seconds"] < 10  # a couple of seconds on 2 busy cores
    assert parts["sft"]["tokens_per_s"] > 0 and 0 <= parts["sft"]["padding_share"] < 1
    assert parts["decode"]["batch1_tokens_per_s"] > 0
    assert parts["kto"]["replies"] == parts["kto"]["wanted"] and parts["kto"]["complete"]
    assert parts["rerank"]["runs"][0]["median_ms"] > 0
    curve = parts["quality"]["curve"]
    assert curve and all(p["val_loss"] > 0 and p["val_bpb"] > 0 and p["val_nats_per_char"] > 0 for p in curve)
    summary = (out / "summary.md").read_text(encoding="utf-8")
    for part in PARTS:
        assert f"| {part.name} | ok |" in summary
        assert f"## {part.name}: ok" in summary
    assert "dry run" in summary
    assert "- pretrain: dialog48m at micro-batch" in summary and "Top by self CPU time" in summary
    assert f"| {profile['top_ops'][0]['name']} |" in summary  # the full table in pretrain's section
    print(f"dry run: {seconds:.1f} s")  # the brief's limit is 60 s on 2 busy cores


def test_pretrain_profile_saves_a_small_trace_and_never_fails_the_part(tmp_path: Path, monkeypatch) -> None:
    from src.bench.gpu_suite import pretrain, profiling

    (tmp_path / "scratch").mkdir()
    ctx = PartContext("pretrain", tmp_path / "scratch", True, 60, {}, {"out_dir": str(tmp_path / "out")})
    best = {"micro_batch": 2, "ms_per_step": 1.0}
    result = pretrain.profile(ctx, best)
    assert "profile_error" not in result, result
    trace = Path(result["profile"]["trace"])
    assert trace.parent == tmp_path / "out" and trace.stat().st_size < profiling.TRACE_MAX_BYTES
    with gzip.open(trace, "rt", encoding="utf-8") as f:
        assert json.load(f)["traceEvents"]

    def broken(*args: object, **kwargs: object) -> dict:
        raise RuntimeError("CUPTI said no")

    monkeypatch.setattr(profiling, "profile_steps", broken)
    assert pretrain.profile(ctx, best) == {"profile_error": "RuntimeError: CUPTI said no"}
    assert "no dialog48m trial" in pretrain.profile(ctx, None)["profile_error"]
    late = PartContext("pretrain", tmp_path / "scratch", True, 5, {}, {})
    assert pretrain.profile(late, best)["profile_error"].startswith("skipped")
    summary = render_summary({"suite": {}, "parts": {"pretrain": {"status": "ok", **pretrain.profile(late, best)}}})
    assert "- pretrain: no profile (skipped" in summary


def failing(ctx: PartContext) -> dict:
    ctx.record(halfway=1)
    raise ValueError("broken on purpose")


def sleeping(ctx: PartContext) -> dict:
    ctx.record(started=True)
    time.sleep(30)
    return {"never": True}


def after(ctx: PartContext) -> dict:
    # what results.json holds on disk when this part starts
    on_disk = json.loads(Path(ctx.options["results"]).read_text(encoding="utf-8"))
    return {"saw": on_disk, "previous": sorted(ctx.previous)}


def test_failing_and_timed_out_parts_are_recorded_and_the_next_part_runs(tmp_path: Path) -> None:
    out = tmp_path / "suite"
    parts = [Part("bad", f"{__name__}:failing", 60, 1), Part("slow", f"{__name__}:sleeping", 1.0, 0.5),
             Part("next", f"{__name__}:after", 60, 1)]
    results = run_suite(parts, out, budget_s=100, dry_run=True, isolate="inline",
                        options={"results": str(out / "results.json")})
    bad, slow, nxt = (results["parts"][n] for n in ("bad", "slow", "next"))
    assert bad["status"] == "error" and "broken on purpose" in bad["error"] and bad["halfway"] == 1
    assert slow["status"] == "timeout" and slow["started"] is True and "never" not in slow
    assert slow["seconds"] < 5
    assert nxt["status"] == "ok" and nxt["previous"] == ["bad", "slow"]
    # what results.json held when `next` started: both earlier outcomes, `next` still pending
    seen = nxt["saw"]["parts"]
    assert seen["bad"]["status"] == "error" and seen["slow"]["status"] == "timeout"
    assert seen["next"]["status"] == "pending"
    summary = (out / "summary.md").read_text()
    assert "| bad | error |" in summary and "| slow | timeout |" in summary and "| next | ok |" in summary


def test_process_isolation_records_a_crash_and_goes_on(tmp_path: Path) -> None:
    parts = [Part("missing", "src.bench.gpu_suite.no_such_module:run", 60, 1),
             Part("machine", "src.bench.gpu_suite.machine:run", 120, 1)]
    results = run_suite(parts, tmp_path, budget_s=200, dry_run=True, isolate="process")
    missing, machine = results["parts"]["missing"], results["parts"]["machine"]
    assert missing["status"] == "error" and "no_such_module" in missing["error"]
    assert machine["status"] == "ok" and machine["matmul_tflops_measured"] > 0
    assert "===== machine (rc 0) =====" in (tmp_path / "suite.log").read_text()


def test_process_part_killed_past_its_limit(tmp_path: Path, monkeypatch) -> None:
    """A part that ignores its own alarm (stuck in C code, say) is killed by the parent."""
    monkeypatch.setattr("src.bench.gpu_suite.runner.GRACE_S", 0.5)
    (tmp_path / "stuck_part.py").write_text(
        "import signal, time\n"
        "def run(ctx):\n"
        "    signal.signal(signal.SIGALRM, signal.SIG_IGN)\n"
        "    time.sleep(60)\n"
        "    return {}\n")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")])))
    parts = [Part("stuck", "stuck_part:run", 1.0, 0.1)]
    began = time.perf_counter()
    results = run_suite(parts, tmp_path / "out", budget_s=10, dry_run=True, isolate="process")
    assert results["parts"]["stuck"]["status"] == "timeout", results["parts"]["stuck"]
    assert "killed" in results["parts"]["stuck"]["error"]
    assert time.perf_counter() - began < 8


def test_limits_keep_the_later_parts_floors() -> None:
    parts = [Part("a", "x:y", 100, 10), Part("b", "x:y", 100, 20), Part("c", "x:y", 500, 180)]
    assert part_limits(parts, 0, 480, 0) == 100
    assert part_limits(parts, 1, 480, 250) == 480 - 250 - 180
    assert part_limits(parts, 2, 480, 300) == 180
    assert part_limits(parts, 1, 480, 480) == 0
    # a budget under the floors' sum (210 s) shrinks them: b keeps 180 * 105 / 210 for c
    assert part_limits(parts, 1, 105, 0) == pytest.approx(105 - 90)
    # the default parts fit the default budget with the quality part's floor of 180 s
    assert sum(p.floor_s for p in PARTS) <= 480
    assert PARTS[-1].name == "quality" and PARTS[-1].floor_s >= 180


def test_partial_results_survive_a_bad_file(tmp_path: Path) -> None:
    (tmp_path / "x.json").write_text("{not json")
    assert read_partial(tmp_path / "x.json") == {}
    assert read_partial(tmp_path / "missing.json") == {}


def test_unknown_part_is_one_clear_line(tmp_path: Path, capsys) -> None:
    from src.bench.gpu_suite.__main__ import main

    assert main(["--out", str(tmp_path), "--parts", "machine,nope"]) == 2
    assert "unknown part(s) ['nope']" in capsys.readouterr().err


def test_compose_lite_matches_hydra() -> None:
    pytest.importorskip("hydra")
    from omegaconf import OmegaConf

    from src.bench import train
    from src.bench.gpu_suite.config import compose_lite
    from src.config import compose, load_config

    args = train.parse_args(["--preset", "dialog48m", "--device", "cuda", "--compile", "--micro-batch", "64",
                             "model.n_layer=12", "model.name=gpt2_124m", "model.dropout=0.0"])
    overrides = train.bench_overrides(args)
    hydra_cfg = OmegaConf.to_container(load_config(compose(overrides)), resolve=True)
    assert hydra_cfg == OmegaConf.to_container(load_config(compose_lite(overrides)), resolve=True)
    plain = OmegaConf.to_container(compose([]), resolve=True)
    plain.pop("hydra", None)
    assert plain == OmegaConf.to_container(compose_lite([]), resolve=True)


@pytest.mark.parametrize("bad", ["+experiment=x", "model=no_such_preset", "~nogroup", "novalue"])
def test_compose_lite_refuses_what_it_does_not_understand(bad: str) -> None:
    from src.bench.gpu_suite.config import compose_lite
    from src.config import ConfigError

    with pytest.raises(ConfigError, match="override"):
        compose_lite([bad])
