"""One prepared GPU check: every speed and scale figure of the project in one command (issue 15).

    python -m src.bench.gpu_suite --out DIR [--dry-run] [--budget-s 480] [--parts a,b,...]

Parts, in order (one module each): machine, pretrain, sft, decode, kto, rerank, quality. Each is timed
and guarded (src/bench/gpu_suite/runner.py); DIR/results.json and DIR/summary.md are rewritten after
every part, DIR/suite.log holds the parts' output. `--dry-run` runs every part at tiny shapes on the
CPU in well under a minute (tests/bench/test_gpu_suite.py), so the suite cannot rot between the
sessions that hold a GPU. Nothing here imports hydra, mlflow, polars or dvc (the device has none);
omegaconf travels as a wheel (src/bench/gpu_prepare.py, scripts/gpu_suite.sh).
"""

from __future__ import annotations

from src.bench.gpu_suite.runner import Part

# cap_s: the most a part gets; floor_s: what is kept for it while earlier parts run. Caps and floors
# fit the default 480 s budget with the quality part getting at least 180 s.
PARTS = [
    Part("machine", "src.bench.gpu_suite.machine:run", 45, 15, "measured bf16 peak beside the nominal 989 TFLOP/s"),
    Part("pretrain", "src.bench.gpu_suite.pretrain:run", 150, 60,
         ">= 1.25M tok/s dialog48m, MFU >= 0.55"),
    Part("sft", "src.bench.gpu_suite.sft:run", 45, 25, "near pretraining's tokens/s"),
    Part("decode", "src.bench.gpu_suite.decode:run", 45, 25, ">= 5,000 tok/s at batch 1"),
    Part("kto", "src.bench.gpu_suite.kto:run", 90, 30, "3,000 replies in < 120 s"),
    Part("rerank", "src.bench.gpu_suite.rerank:run", 30, 15, "4,096 candidates in < 100 ms"),
    Part("quality", "src.bench.gpu_suite.quality:run", 600, 180,
         "background: ~0.96 nats/char after 13 h on a laptop GPU"),
]
