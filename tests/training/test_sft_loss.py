"""The SFT loss is the mean over every loss token of the optimizer step, not a mean of micro-batch means."""

from __future__ import annotations

import copy

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F

from src.config.sections.pretrain import PretrainConfig
from src.models.gpt import IGNORE_INDEX
from src.training.sft_data import Encoded, SFTDataModule, pack_windows
from src.training.sft_module import SFTModule

MODEL = {"vocab_size": 30, "block_size": 16, "n_layer": 1, "n_head": 2, "n_embd": 16}


def conversation(length: int, loss_from: int, seed: int) -> Encoded:
    ids = np.random.default_rng(seed).integers(1, 30, size=length)
    loss = np.zeros(length, dtype=bool)
    loss[loss_from:] = True
    return Encoded(ids.astype(np.int64), loss, loss_bytes=length - loss_from)


class GradCapture(L.Callback):
    def __init__(self) -> None:
        self.grads: dict[str, torch.Tensor] = {}

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        self.grads = {n: p.grad.detach().clone() for n, p in pl_module.model.named_parameters()}


def test_accumulated_gradient_is_the_mean_over_the_steps_loss_tokens() -> None:
    # Two windows with very different numbers of loss tokens (16 and 2), one per micro-batch.
    dense = pack_windows([conversation(17, 1, 0)], 16)
    sparse = pack_windows([conversation(17, 15, 1)], 16)
    windows = copy.copy(dense)
    for name in ("x", "y", "doc", "loss_tokens", "loss_bytes"):
        setattr(windows, name, np.concatenate([getattr(dense, name), getattr(sparse, name)]))
    assert windows.loss_tokens.tolist() == [16, 2]

    torch.manual_seed(0)
    recipe = {**PretrainConfig().__dict__, "grad_clip": 0.0, "max_steps": 1, "warmup_steps": 0}
    module = SFTModule(MODEL, recipe, {}, "", "sha")
    reference = copy.deepcopy(module.model)
    capture = GradCapture()
    dm = SFTDataModule(windows, windows, micro_batch_size=1, val_batch_size=1, val_batches=1, accum=2,
                       seed=0, pin_memory=False)
    trainer = L.Trainer(accelerator="cpu", devices=1, max_steps=1, accumulate_grad_batches=2, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        limit_val_batches=0, num_sanity_val_steps=0, callbacks=[capture])
    trainer.fit(module, datamodule=dm)

    def grads_of(loss_fn) -> dict[str, torch.Tensor]:
        model = copy.deepcopy(reference)
        loss_fn(model).backward()
        return {n: p.grad for n, p in model.named_parameters()}

    def token_losses(model, rows):
        x, y, doc = (torch.from_numpy(a[rows]) for a in (windows.x, windows.y, windows.doc))
        logits, _ = model(x, doc_ids=doc)
        return F.cross_entropy(logits.view(-1, 30), y.reshape(-1), ignore_index=IGNORE_INDEX, reduction="sum")

    per_token = grads_of(lambda m: token_losses(m, [0, 1]) / 18)
    per_micro_batch = grads_of(lambda m: (token_losses(m, [0]) / 16 + token_losses(m, [1]) / 2) / 2)
    for name, grad in capture.grads.items():
        torch.testing.assert_close(grad, per_token[name], rtol=1e-4, atol=1e-7)
    # The two normalizations really differ here, so the check above can tell them apart.
    differs = [not torch.allclose(capture.grads[n], per_micro_batch[n], rtol=1e-3, atol=1e-6) for n in capture.grads]
    assert any(differs)
    # The logged step loss is the same per-token mean.
    with torch.no_grad():
        expected = float(token_losses(reference, [0, 1]) / 18)
    assert abs(float(module.last_loss) - expected) < 1e-4


def test_step_token_count_is_shared_by_the_steps_micro_batches() -> None:
    from src.training.sft_data import TrainPacks

    items = [conversation(int(n), 2, i) for i, n in enumerate([5, 9, 13, 17, 7, 11, 3, 15])]
    windows = pack_windows(items, 16)
    stream = TrainPacks(windows, batch_size=2, accum=3, seed=5, rank=0, world=1, start=0)
    for step in range(4):
        batches = [stream.batch(step * 3 + a) for a in range(3)]
        counts = {float(b[3]) for b in batches}
        assert len(counts) == 1
        assert counts.pop() == sum(int((b[1] != IGNORE_INDEX).sum()) for b in batches)
