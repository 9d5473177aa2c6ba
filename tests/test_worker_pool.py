"""src/worker_pool: a stage killed with SIGKILL leaves no worker and no resource tracker behind."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import psutil
import pytest

from src.paths import PROJECT_ROOT
from src.worker_pool import process_pool

# A stage-like process: opens a pool (on the main thread, or on another thread: then only the
# watchdog guards the workers), keeps both workers busy, says "ready" and waits to be killed.
DRIVER = """
import os, sys, threading, time
from src.worker_pool import process_pool
from tests.test_worker_pool import nap

def main():
    pool = process_pool(2, start_method=sys.argv[1])
    assert sorted(pool.map(nap, [0.0, 0.0])) == [0.0, 0.0]  # both workers up
    jobs = [pool.submit(nap, 600) for _ in range(2)]
    print("ready", flush=True)
    time.sleep(600)

if sys.argv[2] == "thread":
    threading.Thread(target=main, daemon=True).start()
    time.sleep(600)
else:
    main()
"""


def nap(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


def _living(procs: list[psutil.Process]) -> list[psutil.Process]:
    return [p for p in procs if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]


@pytest.mark.parametrize("start_method, opened_on", [
    ("spawn", "main"), ("fork", "main"), ("spawn", "thread")])
def test_workers_and_resource_tracker_die_with_a_killed_parent(start_method, opened_on) -> None:
    parent = subprocess.Popen([sys.executable, "-c", DRIVER, start_method, opened_on],
                              cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                              text=True, env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)})
    children: list[psutil.Process] = []
    try:
        assert parent.stdout.readline().strip() == "ready"
        children = psutil.Process(parent.pid).children(recursive=True)
        assert len(children) >= 2  # two workers (+ the resource tracker under spawn)
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait()
        deadline = time.monotonic() + 5
        while _living(children) and time.monotonic() < deadline:
            time.sleep(0.1)
        left = [" ".join(p.cmdline())[-80:] for p in _living(children)]
        assert not left, f"still running 5 s after the parent was killed: {left}"
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
        for child in _living(children):
            child.kill()


def set_probe(value: str) -> None:
    os.environ["HOMUNCULUS_POOL_PROBE"] = value


def read_probe() -> str | None:
    return os.environ.get("HOMUNCULUS_POOL_PROBE")


def test_the_pool_still_runs_the_callers_initializer() -> None:
    with process_pool(1, initializer=set_probe, initargs=("set",), start_method="spawn") as pool:
        assert pool.submit(read_probe).result() == "set"


def test_every_process_pool_in_src_is_an_orphan_proof_one() -> None:
    """New pools must go through src.worker_pool, or a killed stage leaves them running."""
    raw = re.compile(r"\bProcessPoolExecutor\(|\bmultiprocessing\.Pool\(|\bget_context\([^)]*\)\.Pool\(|"
                     r"\bmultiprocessing\.Process\(")
    offenders = [f"{path.relative_to(PROJECT_ROOT)}:{n}"
                 for path in sorted((PROJECT_ROOT / "src").rglob("*.py"))
                 if path.name != "worker_pool.py"
                 for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
                 if raw.search(line)]
    assert not offenders, f"open process pools with src.worker_pool.process_pool: {offenders}"
