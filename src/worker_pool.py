"""Process pools whose workers die with the process that opened them.

A stage killed with SIGKILL (an OOM kill, a `kill -9`, a CI timeout) gets no chance to shut its
ProcessPoolExecutor down: its workers would wait on their task queue forever, and with them the
multiprocessing resource tracker, which exits only once every process holding its pipe is gone.
Each worker here guards itself twice:
- Linux: PR_SET_PDEATHSIG, so the kernel sends SIGKILL the moment the parent goes, even while the
  worker is deep in C code that holds the GIL;
- everywhere: a daemon thread that polls the parent pid and ends the worker when it changes
  (the worker was re-parented, i.e. orphaned).
Once the workers are gone the resource tracker reads end-of-file and exits by itself.

PR_SET_PDEATHSIG fires when the *thread* that started the worker exits, and the executor starts
workers from the thread calling `submit`. So it is armed only for pools opened on the main thread
(the stages' case); submit from that same thread. Pools opened elsewhere rely on the watchdog.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from typing import Any

PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
WATCHDOG_INTERVAL_S = 0.2


def process_pool(
    max_workers: int,
    initializer: Callable[..., object] | None = None,
    initargs: tuple[Any, ...] = (),
    start_method: str | None = None,
) -> ProcessPoolExecutor:
    """A ProcessPoolExecutor (start method `start_method`, default the platform's) whose workers
    exit when this process dies; `initializer(*initargs)` then runs in each worker as usual."""
    arm_pdeathsig = threading.current_thread() is threading.main_thread()
    return ProcessPoolExecutor(
        max_workers=max_workers,
        mp_context=multiprocessing.get_context(start_method),
        initializer=_init_orphan_proof_worker,
        initargs=(os.getpid(), arm_pdeathsig, initializer, initargs),
    )


def die_with_parent(parent_pid: int, arm_pdeathsig: bool = True) -> None:
    """Make this process exit when `parent_pid` is no longer its parent."""
    if arm_pdeathsig and sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
            arm_pdeathsig = False  # refused (seccomp, odd kernels): the watchdog still works
    if os.getppid() != parent_pid:
        os._exit(1)  # the parent died before the guard was set
    threading.Thread(target=_watch_parent, args=(parent_pid,), name="die-with-parent",
                     daemon=True).start()


def _watch_parent(parent_pid: int) -> None:
    while True:
        time.sleep(WATCHDOG_INTERVAL_S)
        if os.getppid() != parent_pid:
            # os._exit: no atexit handlers or queue feeder joins, which would wait on the dead
            # parent's pipes.
            os._exit(1)


def _init_orphan_proof_worker(parent_pid: int, arm_pdeathsig: bool,
                              initializer: Callable[..., object] | None,
                              initargs: tuple[Any, ...]) -> None:
    die_with_parent(parent_pid, arm_pdeathsig)
    if initializer is not None:
        initializer(*initargs)
