"""The GPU path: bf16 autocast, torch.compile, fused AdamW, MFU, the asynchronous non-finite guard."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from src.stage import StageRun
from src.training.flops import PEAK_TFLOPS
from src.training.pretrain import pretrain

GPU = ("trainer=gpu", "trainer.enable_progress_bar=false", "trainer.num_threads=1")


@pytest.mark.gpu
def test_bf16_compiled_run_on_one_gpu(tmp_path: Path, make_config) -> None:
    cfg = make_config(*GPU, "trainer.compile=true")
    pretrain(cfg, StageRun("pretrain", cfg, tracking_active=False))
    report = json.loads((tmp_path / "report" / "metrics.json").read_text())
    assert report["steps"] == 6 and math.isfinite(report["val_loss"])
    ckpt = torch.load(tmp_path / "ckpt" / "last.ckpt", weights_only=True)
    assert ckpt["optimizer_states"][0]["param_groups"][0]["fused"] is True
    assert all(not k.count("_orig_mod") for k in ckpt["state_dict"])  # compile keeps the names
    if any(name in torch.cuda.get_device_name() for name in PEAK_TFLOPS):
        throughput = json.loads((tmp_path / "report" / "throughput.json").read_text())
        assert 0 < throughput["mfu"] < 1


@pytest.mark.gpu
def test_non_finite_guard_on_gpu_keeps_last_checkpoint(tmp_path: Path, make_config,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from src.training.module import NonFiniteError, PretrainModule

    original = PretrainModule.training_step

    def poisoned_at_step_4(self, batch, batch_idx):
        loss = original(self, batch, batch_idx)
        return loss * float("nan") if self.global_step == 3 else loss

    monkeypatch.setattr(PretrainModule, "training_step", poisoned_at_step_4)
    cfg = make_config(*GPU, "trainer.compile=false")
    with pytest.raises(NonFiniteError, match="optimizer step 4"):
        pretrain(cfg, StageRun("pretrain", cfg, tracking_active=False))
    ckpt = torch.load(tmp_path / "ckpt" / "last.ckpt", weights_only=True)
    assert ckpt["global_step"] == 3
    assert all(torch.isfinite(t).all() for t in ckpt["state_dict"].values())
