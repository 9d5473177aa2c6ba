"""Several processes, faked (no process group needed): even validation split, world size in identity."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from src.stage import StageRun
from src.training.checkpoint import identity_diff
from src.training.data import TokenDataModule, even_val_batches, read_meta
from src.training.module import PretrainModule
from src.training.pretrain import PretrainConfigError, build_trainer, model_config, run_identity


@pytest.mark.parametrize("n,world,expected", [(8, 1, 8), (8, 2, 8), (8, 3, 6), (7, 4, 4), (5, 5, 5)])
def test_even_val_batches(n: int, world: int, expected: int) -> None:
    assert even_val_batches(n, world) == expected


def test_fewer_val_batches_than_ranks_is_refused() -> None:
    with pytest.raises(ValueError, match="val_batches=3 is fewer than the 4 processes"):
        even_val_batches(3, 4)


@pytest.mark.parametrize("world", [1, 2, 3, 4])
def test_every_rank_runs_the_same_number_of_val_batches(token_dir: Path, world: int) -> None:
    meta = read_meta(token_dir)
    n = even_val_batches(7, world)
    dm = TokenDataModule(meta, 16, 4, 4, n, 1, seed=0, num_workers=0, pin_memory=False)
    seen = []
    for rank in range(world):
        dm.trainer = SimpleNamespace(global_rank=rank, world_size=world)
        seen.append(dm.eval_dataloader().dataset.indices)
    assert len({len(s) for s in seen}) == 1  # the same count on every rank: no rank waits alone
    assert sorted(i for s in seen for i in s) == list(range(n))  # each batch on exactly one rank


def _module(cfg) -> tuple[PretrainModule, object]:
    meta = read_meta(Path(cfg.pretrain.data_dir))
    model = model_config(cfg, meta)
    return PretrainModule(model, dict(cfg.pretrain), dict(cfg.trainer), "", {}), meta


def test_trainer_for_three_processes_drops_the_uneven_rest(make_config) -> None:
    # ddp_spawn builds its Trainer without starting processes, so three CPU ranks can be planned here.
    cfg = make_config("trainer.strategy=ddp_spawn", "trainer.devices=3", "pretrain.val_batches=8",
                      "pretrain.tokens_per_step=0")
    module, meta = _module(cfg)
    run = StageRun("pretrain", cfg, tracking_active=False)
    trainer, dm = build_trainer(cfg, module, meta, run)
    assert trainer.world_size == 3 and dm.val_batches == 6
    assert run.summary.dropped["val_batches_uneven_over_ranks"] == 2
    assert any("validating on 6 of pretrain.val_batches=8" in n for n in run.summary.notes)

    cfg = make_config("trainer.strategy=ddp_spawn", "trainer.devices=4", "pretrain.val_batches=3")
    with pytest.raises(PretrainConfigError, match="val_batches=3 is fewer than the 4 processes"):
        build_trainer(cfg, *_module(cfg), StageRun("pretrain", cfg, tracking_active=False))


def test_world_size_is_part_of_the_resume_identity(make_config) -> None:
    cfg = make_config()
    meta = read_meta(Path(cfg.pretrain.data_dir))
    model = model_config(cfg, meta)
    saved = {"global_step": 5, "hyper_parameters": {"identity": run_identity(cfg, model, meta, 1)}}
    assert identity_diff(saved, run_identity(cfg, model, meta, 1)) == (5, [])
    step, diff = identity_diff(saved, run_identity(cfg, model, meta, 2))
    assert diff == ["world_size: 1 -> 2"]
