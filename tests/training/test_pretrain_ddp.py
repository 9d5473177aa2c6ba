"""Two-process data parallel training on the CPU (gloo), through Lightning's ddp_spawn strategy."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from src.stage import StageRun
from src.training.pretrain import pretrain


def test_two_process_ddp_on_cpu(tmp_path: Path, make_config) -> None:
    cfg = make_config("trainer.strategy=ddp_spawn", "trainer.devices=2", "pretrain.max_steps=3",
                      "pretrain.val_every=3", "pretrain.save_every=3")
    pretrain(cfg, StageRun("pretrain", cfg, tracking_active=False))
    report = json.loads((tmp_path / "report" / "metrics.json").read_text())
    assert report["world_size"] == 2 and report["steps"] == 3
    assert report["tokens_per_step"] == 2 * 4 * 16  # both ranks' micro-batches count
    ckpt = torch.load(tmp_path / "ckpt" / "last.ckpt", weights_only=True)
    assert ckpt["global_step"] == 3
    assert all(torch.isfinite(t).all() for t in ckpt["state_dict"].values())
