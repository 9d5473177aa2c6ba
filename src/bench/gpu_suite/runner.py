"""Runs the suite's parts in order, each timed and guarded, and writes the results after every part.

Each part is a function `run(ctx: PartContext) -> dict` in a module of this package. It gets a time
limit (its own cap, cut so that the later parts keep their floors inside the suite's budget), reads
`ctx.left()` to size its work, and may `ctx.record(...)` partial figures as it goes: they survive the
part's timeout or crash. A part runs in its own process (`isolate="process"`, the default on a GPU:
a sticky CUDA error, a hung kernel or a leak of device memory ends with it, and a hard kill enforces
the limit) or in this process under a SIGALRM timer (`"inline"`, the dry run: imports are paid once).
"""

from __future__ import annotations

import importlib
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from src.atomic_io import write_json_atomic, write_text_atomic
from src.bench.gpu_suite.summary import render_summary

RESULTS_FILE, SUMMARY_FILE, LOG_FILE = "results.json", "summary.md", "suite.log"
# A process part past its limit gets this long to wind down (write its figures) before the kill.
GRACE_S = 15.0
LOG_TAIL_CHARS = 2000


@dataclass(frozen=True)
class Part:
    name: str
    target: str  # "module:function" taking a PartContext
    cap_s: float  # the most time it gets
    floor_s: float  # the time kept for it while earlier parts run
    aim: str = ""


@dataclass
class PartContext:
    name: str
    scratch: Path  # private working folder (temporary files, the partial results)
    dry_run: bool
    limit_s: float
    previous: dict[str, Any]  # the results of the parts before this one
    options: dict[str, Any] = field(default_factory=dict)
    started: float = field(default_factory=time.perf_counter)

    @property
    def partial_file(self) -> Path:
        return self.scratch / f"{self.name}.partial.json"

    def left(self) -> float:
        """Seconds left of this part's limit."""
        return self.limit_s - (time.perf_counter() - self.started)

    def record(self, **values: Any) -> None:
        """Merge `values` into this part's results on disk now (they outlive a timeout or crash)."""
        data = read_partial(self.partial_file)
        data.update(values)
        write_json_atomic(self.partial_file, data)

    def log(self, text: str) -> None:
        print(f"[{self.name} {time.perf_counter() - self.started:6.1f}s] {text}", file=sys.stderr, flush=True)


class PartTimeout(Exception):
    """An inline part ran past its limit."""


def read_partial(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def resolve_target(target: str) -> Callable[[PartContext], dict[str, Any] | None]:
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


def part_limits(parts: list[Part], index: int, budget_s: float, elapsed_s: float) -> float:
    """Part `index`'s limit: its cap, cut so the parts after it keep their floors in the budget
    (floors shrink in proportion when the budget is smaller than all of them together)."""
    scale = min(1.0, budget_s / max(1e-9, sum(p.floor_s for p in parts)))
    later = scale * sum(p.floor_s for p in parts[index + 1:])
    return max(0.0, min(parts[index].cap_s, budget_s - elapsed_s - later))


def _tail(text: str) -> str:
    return text[-LOG_TAIL_CHARS:]


def run_inline(part: Part, ctx: PartContext) -> dict[str, Any]:
    def expire(signum: int, frame: Any) -> None:
        raise PartTimeout(f"past its limit of {ctx.limit_s:.0f} s")

    try:
        # Imported before the timer starts: an import cut short by the alarm would leave a package
        # half-initialized in sys.modules and break every later part that imports it.
        function = resolve_target(part.target)
    except Exception as exc:  # noqa: BLE001
        return {"status": "error", "error": f"{type(exc).__name__}: {exc}", "traceback": _tail(traceback.format_exc())}
    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, max(ctx.limit_s - (time.perf_counter() - ctx.started), 0.01))
    try:
        result = function(ctx) or {}
        ctx.record(**result)
        return {"status": "ok"}
    except PartTimeout as exc:
        return {"status": "timeout", "error": str(exc)}
    except BaseException as exc:  # noqa: BLE001 - any failure of one part is recorded, the suite goes on
        if isinstance(exc, KeyboardInterrupt):
            raise
        return {"status": "error", "error": f"{type(exc).__name__}: {exc}",
                "traceback": _tail(traceback.format_exc())}
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def run_process(part: Part, ctx: PartContext, log: Path) -> dict[str, Any]:
    spec = ctx.scratch / f"{part.name}.ctx.json"
    write_json_atomic(spec, {"name": part.name, "target": part.target, "scratch": str(ctx.scratch),
                             "dry_run": ctx.dry_run, "limit_s": ctx.limit_s, "previous": ctx.previous,
                             "options": ctx.options, "parent": os.getpid()})
    child_log = ctx.scratch / f"{part.name}.log"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with child_log.open("w", encoding="utf-8") as out:
        proc = subprocess.Popen([sys.executable, "-m", "src.bench.gpu_suite.runner", "--child", str(spec)],
                                stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        try:
            rc = proc.wait(timeout=ctx.limit_s + GRACE_S)
            timed_out = False
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # its own session: the part and anything it started
            rc, timed_out = proc.wait(), True
    text = child_log.read_text(encoding="utf-8", errors="replace")
    with log.open("a", encoding="utf-8") as f:
        f.write(f"\n===== {part.name} (rc {rc}) =====\n{text}")
    status = read_partial(ctx.partial_file).pop("_status", None) or {}
    if timed_out:
        return {"status": "timeout", "error": f"killed {GRACE_S:.0f} s past its limit of {ctx.limit_s:.0f} s",
                "log_tail": _tail(text)}
    if rc != 0 and status.get("status", "ok") == "ok":
        return {"status": "error", "error": f"the part's process exited with status {rc}", "log_tail": _tail(text)}
    if status.get("status") not in (None, "ok"):
        status["log_tail"] = _tail(text)
    return status or {"status": "ok"}


def child_main(spec_file: str) -> int:
    """The part's own process: run it inline (limit enforced by SIGALRM too) and leave the status
    beside its partial results, where the parent reads both."""
    spec = json.loads(Path(spec_file).read_text(encoding="utf-8"))
    from src.worker_pool import die_with_parent

    die_with_parent(int(spec["parent"]))
    ctx = PartContext(spec["name"], Path(spec["scratch"]), spec["dry_run"], spec["limit_s"],
                      spec["previous"], spec["options"])
    outcome = run_inline(Part(spec["name"], spec["target"], 0, 0), ctx)
    ctx.record(_status=outcome)
    if outcome["status"] != "ok":
        print(f"{spec['name']}: {outcome['status']}: {outcome.get('error')}\n{outcome.get('traceback', '')}",
              file=sys.stderr)
    return 0 if outcome["status"] == "ok" else 1


def write_results(out: Path, results: dict[str, Any]) -> None:
    write_json_atomic(out / RESULTS_FILE, results)
    write_text_atomic(out / SUMMARY_FILE, render_summary(results))


def run_suite(parts: list[Part], out: Path, budget_s: float, dry_run: bool, isolate: str,
              options: dict[str, Any] | None = None, argv: list[str] | None = None) -> dict[str, Any]:
    """Run `parts` in order; results.json and summary.md in `out` are rewritten after each part."""
    out.mkdir(parents=True, exist_ok=True)
    log = out / LOG_FILE
    log.write_text("", encoding="utf-8")
    results: dict[str, Any] = {
        "suite": {"budget_s": budget_s, "dry_run": dry_run, "isolate": isolate, "argv": argv or [],
                  "python": platform.python_version(), "host": platform.node(),
                  "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "elapsed_s": 0.0},
        "parts": {p.name: {"status": "pending", "aim": p.aim} for p in parts},
    }
    write_results(out, results)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="gpu_suite_") as tmp:
        for index, part in enumerate(parts):
            elapsed = time.perf_counter() - start
            limit = part_limits(parts, index, budget_s, elapsed)
            entry = results["parts"][part.name]
            if limit < 1.0:
                entry.update(status="skipped", error=f"no time left in the {budget_s:.0f} s budget")
            else:
                scratch = Path(tmp) / part.name
                scratch.mkdir()
                previous = {k: v for k, v in results["parts"].items() if v.get("status") != "pending"}
                ctx = PartContext(part.name, scratch, dry_run, limit, previous, dict(options or {}))
                print(f"== {part.name}: limit {limit:.0f} s", file=sys.stderr, flush=True)
                began = time.perf_counter()
                outcome = run_process(part, ctx, log) if isolate == "process" else run_inline(part, ctx)
                figures = read_partial(ctx.partial_file)
                figures.pop("_status", None)
                entry.update(figures)
                entry.update(outcome, seconds=round(time.perf_counter() - began, 2), limit_s=round(limit, 1))
            results["suite"]["elapsed_s"] = round(time.perf_counter() - start, 2)
            print(f"== {part.name}: {entry['status']} ({entry.get('seconds', 0):.1f} s)"
                  + (f": {entry['error']}" if entry.get("error") else ""), file=sys.stderr, flush=True)
            write_results(out, results)
    return results


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        sys.exit(child_main(sys.argv[2]))
    print("usage: python -m src.bench.gpu_suite.runner --child SPEC (the suite runs it)", file=sys.stderr)
    sys.exit(2)
