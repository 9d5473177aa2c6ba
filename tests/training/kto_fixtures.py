"""A tiny chat checkpoint and unpaired KTO pairs in the kto_pairs stage's format, for KTO tests."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import torch
from omegaconf import DictConfig

from src.config import compose, load_config
from src.models.gpt import GPT
from src.tokenizers.char import CharTokenizer
from tests.training.conftest import FOREIGN_GROUPS
from tests.training.sft_fixtures import TINY_MODEL, sample_conversations, write_tokenizer

UNDESIRABLE = ("a a a a a a a a a a a a", "ok.", "the the the the the the")


def write_chat_checkpoint(path: Path, tok: CharTokenizer, tokenizer_dir: Path, chat: bool = True) -> Path:
    torch.manual_seed(0)
    model = GPT({**TINY_MODEL, "vocab_size": tok.vocab_size, "dropout": 0.1})
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": {f"model.{k}": v for k, v in model.state_dict().items()},
                "global_step": 10,
                "hyper_parameters": {"model": model.config_dict(), "tokenizer_dir": str(tokenizer_dir),
                                     "tokenizer_sha256": tok.sha256, "chat": chat}}, path)
    return path


def pair_rows(n_prompts: int, seed: int, split: str) -> list[dict]:
    """Per prompt (a conversation up to its last assistant turn): the dataset's reply (desirable)
    and one or two undesirable ones, written side by side as kto_pairs writes them."""
    rows = []
    for i, conversation in enumerate(sample_conversations(n_prompts, seed)):
        prompt, reply = conversation[:-1], conversation[-1]["content"]
        rows.append({"prompt": prompt, "completion": reply, "completion_ended": True, "label": True,
                     "preset": "dataset", "split": split})
        for j in range(1 + i % 2):
            bad = UNDESIRABLE[(i + j) % len(UNDESIRABLE)]
            rows.append({"prompt": prompt, "completion": bad, "completion_ended": j == 0, "label": False,
                         "preset": "loops", "split": split})
    return rows


def write_pairs(directory: Path, rows: list[dict]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pylist(rows)
    pq.write_table(table, directory / "pairs.parquet")
    return directory / "pairs.parquet"


def kto_setup(tmp_path: Path, n_train: int = 12, n_val: int = 4) -> CharTokenizer:
    tok = write_tokenizer(tmp_path / "tokenizer")
    write_chat_checkpoint(tmp_path / "sft" / "best.ckpt", tok, tmp_path / "tokenizer")
    write_pairs(tmp_path / "pairs", pair_rows(n_train, 0, "train") + pair_rows(n_val, 1, "val"))
    return tok


def kto_config(tmp_path: Path, *overrides: str) -> DictConfig:
    model = [f"model.{k}={v}" for k, v in TINY_MODEL.items()]
    return load_config(compose([
        *(f"~{group}" for group in FOREIGN_GROUPS), "tracking.enabled=false", *model,
        "trainer.enable_progress_bar=false", "trainer.num_threads=1",
        f"kto.data_dir={tmp_path / 'pairs'}", f"kto.tokenizer_dir={tmp_path / 'tokenizer'}",
        f"kto.init_checkpoint={tmp_path / 'sft' / 'best.ckpt'}",
        f"kto.ckpt_dir={tmp_path / 'kto'}", f"kto.report_dir={tmp_path / 'report'}",
        "kto.max_steps=6", "kto.warmup_steps=1", "kto.micro_batch_size=4", "kto.log_every=1",
        "kto.val_every=3", "kto.save_every=1", "kto.sample_tokens=8",
        "kto.sample_prompts=[hi cat?,sun?]",
        *overrides,
    ]))
