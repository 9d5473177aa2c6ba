"""The reranker's LightningModule, batches and evaluation callback.

The module is pretraining's (optimizer, schedule, clipping, non-finite guard, checkpoints, exact
RNG resume) with a cross-encoder as its model and binary cross-entropy on one logit per pair,
positives weighted by `pos_weight`. Batches are pairs of text encoded by the model's own
`pair_batch` (the project tokenizer, or the Hugging Face one). The evaluator scores every val
sample and the ranking groups every `val_every` steps (src/training/reranker_metrics.py), keeps
the best checkpoint by val loss, and writes metrics.json through the base Evaluator.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from src.training.callbacks import Evaluator, _sync, eager
from src.training.checkpoint import BEST
from src.training.module import PretrainModule
from src.training.reranker_metrics import RankingGroup, classification_metrics, ranking_metrics


@dataclass
class PairSplit:
    contexts: list[str]
    candidates: list[str]
    labels: list[int]
    kinds: list[str]

    def __len__(self) -> int:
        return len(self.labels)


class PairDataset(Dataset):
    def __init__(self, split: PairSplit) -> None:
        self.split = split

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, i: int) -> tuple[str, str, int]:
        s = self.split
        return s.contexts[i], s.candidates[i], s.labels[i]


def pair_collate(model: Any) -> Any:
    def collate(rows: Sequence[tuple[str, str, int]]) -> dict[str, Tensor]:
        contexts, candidates, labels = zip(*rows, strict=True)
        batch = model.pair_batch(list(contexts), list(candidates))
        batch["labels"] = torch.tensor(labels, dtype=torch.float32)
        return batch
    return collate


class PairDataModule(L.LightningDataModule):
    """Shuffled train pairs (a seeded generator; epochs repeat until max_steps) and ordered val pairs."""

    def __init__(self, train: PairSplit, val: PairSplit, model: Any, batch_size: int, val_batch_size: int,
                 val_batches: int, seed: int) -> None:
        super().__init__()
        self.train, self.val, self.model = train, val, model
        self.batch_size, self.val_batch_size, self.val_batches, self.seed = batch_size, val_batch_size, val_batches, seed

    def train_dataloader(self) -> DataLoader:
        dataset = PairDataset(self.train)
        dist = torch.distributed
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            # Each process its own share of every pass (Lightning sets the sampler's epoch).
            sampler = DistributedSampler(dataset, shuffle=True, seed=self.seed, drop_last=True)
            return DataLoader(dataset, batch_size=self.batch_size, sampler=sampler,
                              collate_fn=pair_collate(self.model))
        generator = torch.Generator().manual_seed(self.seed)
        return DataLoader(dataset, batch_size=self.batch_size, shuffle=True, drop_last=False,
                          generator=generator, collate_fn=pair_collate(self.model))

    def eval_dataloader(self) -> DataLoader:
        return DataLoader(PairDataset(self.val), batch_size=self.val_batch_size, shuffle=False,
                          collate_fn=pair_collate(self.model))


class RerankerModule(PretrainModule):
    """A cross-encoder trained with BCE on one logit; checkpoints are marked `reranker`."""

    def __init__(self, model: torch.nn.Module, recipe: dict, trainer: dict, tokenizer_dir: str,
                 pos_weight: float, identity: dict | None = None) -> None:
        super().__init__(model, recipe, trainer, tokenizer_dir, identity)
        self.hparams["reranker"] = True
        self.hparams["pos_weight"] = pos_weight
        self.register_buffer("pos_weight", torch.tensor([pos_weight]), persistent=False)

    def pair_loss(self, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        labels = batch.pop("labels")
        logits = self.model(**batch).float()
        loss = F.binary_cross_entropy_with_logits(logits, labels, pos_weight=self.pos_weight)
        return loss, logits

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        loss, _ = self.pair_loss(dict(batch))
        detached = loss.detach()
        self._loss_sum = detached if self._loss_sum is None else self._loss_sum + detached
        self._micro_batches += 1
        return loss

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        _, logits = self.pair_loss(dict(batch))
        return logits.detach()


class RerankerEvaluator(Evaluator):
    """Every val_every steps: val loss (unweighted BCE), accuracy, AUCs, average precision, MRR@k and
    hit@1; best.ckpt on the lowest val loss."""

    def __init__(self, *args: Any, val: PairSplit, groups: list[RankingGroup], rank_k: int,
                 **kwargs: Any) -> None:
        super().__init__(*args, samples=None, **kwargs)
        self.val, self.groups, self.rank_k = val, groups, rank_k

    @torch.no_grad()
    def scores(self, trainer: L.Trainer, pl_module: RerankerModule) -> np.ndarray:
        """Sigmoid scores of every val sample (in order; at most val_batches batches)."""
        out = []
        for i, batch in enumerate(self.dm.eval_dataloader()):
            if self.dm.val_batches and i >= self.dm.val_batches:
                break
            batch = trainer.strategy.batch_to_device(batch)
            out.append(torch.sigmoid(trainer.strategy.validation_step(batch, i).float()).cpu())
        return torch.cat(out).numpy() if out else np.zeros(0, dtype=np.float32)

    @torch.no_grad()
    def group_scores(self, pl_module: RerankerModule) -> list[np.ndarray]:
        model = pl_module.model
        contexts = [g.context for g in self.groups for _ in g.candidates]
        candidates = [c for g in self.groups for c in g.candidates]
        flat = []
        size = self.dm.val_batch_size
        for start in range(0, len(candidates), size):
            batch = model.pair_batch(contexts[start:start + size], candidates[start:start + size])
            batch = {k: v.to(pl_module.device) for k, v in batch.items()}
            flat.append(torch.sigmoid(model(**batch).float()).cpu())
        scores = torch.cat(flat).numpy() if flat else np.zeros(0, dtype=np.float32)
        bounds = np.cumsum([0] + [len(g.candidates) for g in self.groups])
        return [scores[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]

    def evaluate(self, trainer: L.Trainer, pl_module: L.LightningModule, step: int) -> None:
        assert isinstance(pl_module, RerankerModule)
        was_training = pl_module.training
        pl_module.eval()
        _sync(pl_module.device)
        with trainer.precision_plugin.forward_context(), eager():
            scores = self.scores(trainer, pl_module)
            groups = self.group_scores(pl_module)
        pl_module.train(was_training)
        n = len(scores)
        labels, kinds = self.val.labels[:n], self.val.kinds[:n]
        entry: dict[str, float | None] = {"step": step, "val_loss": None, "val_bpb": None}
        if n:
            p = np.clip(scores.astype(np.float64), 1e-7, 1 - 1e-7)
            y = np.asarray(labels, dtype=np.float64)
            entry["val_loss"] = float(-(y * np.log(p) + (1 - y) * np.log(1 - p)).mean())
            entry.update(classification_metrics(labels, scores, kinds))
        entry.update(ranking_metrics(groups, self.rank_k))
        entry = {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in entry.items()}
        self.curve.append(entry)
        for logger in trainer.loggers:
            logger.log_metrics({f"val/{k}": v for k, v in entry.items() if k != "step" and v is not None},
                               step=step)
        if trainer.is_global_zero:
            shown = ", ".join(f"{k} {v:.4f}" for k, v in entry.items()
                              if k not in {"step", "val_bpb"} and isinstance(v, float))
            print(f"step {step}: {shown or 'no val samples'}", file=sys.stderr)
        val_loss = entry["val_loss"]
        if val_loss is not None and val_loss < self.best_loss:
            self.best_loss, self.best_step = val_loss, step
            trainer.save_checkpoint(self.plan.ckpt_dir / BEST, weights_only=False)
