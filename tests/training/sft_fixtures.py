"""Tiny dialogues, a char tokenizer with the chat tokens, and a 'pretrained' checkpoint for SFT tests."""

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

ALPHABET = "abcdefghijklmnopqrstuvwxyz .,?!\n"
TINY_MODEL = {"vocab_size": 0, "block_size": 64, "n_layer": 1, "n_head": 2, "n_embd": 32}


def conv(*turns: str, system: str | None = None) -> list[dict[str, str]]:
    roles = ["user", "assistant"] * len(turns)
    messages = [{"role": "system", "content": system}] if system else []
    return messages + [{"role": r, "content": t} for r, t in zip(roles, turns, strict=False)]


def sample_conversations(n: int, seed: int = 0) -> list[list[dict[str, str]]]:
    """Learnable toy chats: the reply repeats the question's words in reverse order."""
    g = torch.Generator().manual_seed(seed)
    words = ["hi", "cat", "dog", "sun", "tea", "big", "red", "run", "fly", "sea"]
    out = []
    for i in range(n):
        turns = []
        for _ in range(1 + int(torch.randint(0, 3, (1,), generator=g))):
            q = [words[int(j)] for j in torch.randint(0, len(words), (int(torch.randint(1, 4, (1,), generator=g)),), generator=g)]
            turns += [" ".join(q) + "?", " ".join(reversed(q)) + "."]
        out.append(conv(*turns, system="be brief." if i % 5 == 0 else None))
    return out


def write_dialogues(directory: Path, train: list, val: list) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    rows = [(c, "train") for c in train] + [(c, "val") for c in val]
    table = pa.table({
        "conversation": [c for c, _ in rows],
        "source": ["test"] * len(rows),
        "doc_id": [f"d{i}" for i in range(len(rows))],
        "split": [s for _, s in rows],
    })
    pq.write_table(table, directory / "dialogues.parquet")
    return directory


def write_tokenizer(directory: Path, alphabet: str = ALPHABET) -> CharTokenizer:
    tok = CharTokenizer(alphabet)
    tok.save(directory)
    return tok


def write_pretrained(path: Path, tok: CharTokenizer, tokenizer_dir: Path, sha256: str | None = None,
                     vocab_size: int | None = None) -> Path:
    torch.manual_seed(0)
    model = GPT({**TINY_MODEL, "vocab_size": vocab_size or tok.vocab_size})
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": {f"model.{k}": v for k, v in model.state_dict().items()},
                "global_step": 10,
                "hyper_parameters": {"model": model.config_dict(), "tokenizer_dir": str(tokenizer_dir),
                                     "identity": {"data": {"tokenizer_sha256": sha256 or tok.sha256}}}}, path)
    return path


def sft_config(tmp_path: Path, *overrides: str) -> DictConfig:
    model = [f"model.{k}={v}" for k, v in TINY_MODEL.items()]
    return load_config(compose([
        *(f"~{group}" for group in (*FOREIGN_GROUPS, "build_dialogues")), "tracking.enabled=false", *model,
        "trainer.enable_progress_bar=false", "trainer.num_threads=1",
        f"sft.data_dir={tmp_path / 'dialogues'}", f"sft.tokenizer_dir={tmp_path / 'tokenizer'}",
        f"sft.init_checkpoint={tmp_path / 'pretrain' / 'best.ckpt'}",
        f"sft.ckpt_dir={tmp_path / 'sft'}", f"sft.report_dir={tmp_path / 'report'}",
        "sft.max_steps=6", "sft.warmup_steps=2", "sft.micro_batch_size=4", "sft.log_every=1",
        "sft.val_every=3", "sft.save_every=1", "sft.val_batches=2", "sft.sample_tokens=8",
        "sft.sample_prompts=[hi cat?,sun?]", "sft.lr=3e-3",
        *overrides,
    ]))


def sft_setup(tmp_path: Path, n_train: int = 40, n_val: int = 8) -> CharTokenizer:
    tok = write_tokenizer(tmp_path / "tokenizer")
    write_dialogues(tmp_path / "dialogues", sample_conversations(n_train, 0), sample_conversations(n_val, 1))
    write_pretrained(tmp_path / "pretrain" / "best.ckpt", tok, tmp_path / "tokenizer")
    return tok
