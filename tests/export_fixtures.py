"""Shared by the hf and gguf export tests: a small SentencePiece BPE trained here and a checkpoint
laid out as the pretrain stage writes it. The sentences are this project's own writing."""

from __future__ import annotations

import random
from pathlib import Path

import torch

from src.config.sections.tokenizer import TokenizerConfig
from src.models.gpt import GPT
from src.tokenizers.bpe import train_bpe

SENTENCES = [
    "Утром над рекой стоял туман, и лодочник долго не решался отчалить.",
    "— Вы опять опоздали, — сказала она, не поднимая глаз от книги.",
    "«Мы ещё увидим небо в алмазах», — подумал доктор и усмехнулся…",
    "В 1880 году имение продали за 12 500 рублей.",
    "Самовар шумел, за окном лаяли собаки, а в передней кто-то кашлял.",
    "The steamer left at dawn; nobody on the pier waved.",
    "Старик снял шапку, перекрестился и медленно пошёл по дороге к станции.",
    "Привет.  Ты где был?\tДома.",
]
# Texts the tokenizers are compared on: Cyrillic, double spaces, tabs, digits, the chat tags, a
# newline run, characters the small vocabulary lacks (byte fallback), an emoji.
PROBE_TEXTS = [
    "Утром над рекой стоял туман.",
    "  два  пробела и\tтаб, 2024 год\n\n\nновые строки ",
    "<|user|>\nЗдравствуй!<|end|>\n<|assistant|>\nПривет<|end|>\n<|endoftext|>",
    "Ёлка, щука, ЪЬ — «кавычки» и многоточие…",
    "mixed English текст with 😀 and ☃ and Ω",
    "",
]


def train_small_bpe(directory: Path, vocab_size: int = 400) -> Path:
    """A byte-fallback BPE trained on SENTENCES recombined; saved to `directory`."""
    rng = random.Random(0)
    lines = [" ".join(rng.choice(SENTENCES) for _ in range(rng.randint(1, 6))) for _ in range(400)]
    text = directory.parent / f"{directory.name}.txt"
    text.parent.mkdir(parents=True, exist_ok=True)
    text.write_text("\n".join(lines) + "\n", encoding="utf-8")
    tcfg = TokenizerConfig(vocab_size=vocab_size, hard_vocab_limit=False, num_threads=1)
    tok = train_bpe(text, tcfg, seed=0, normalize_cfg=None)
    tok.save(directory)
    return directory


def write_checkpoint(directory: Path, tokenizer_dir: Path, vocab_size: int, chat: bool = False,
                     **options) -> tuple[Path, GPT]:
    """A Lightning-layout checkpoint of a small random GPT using `tokenizer_dir` (`chat`: marked as
    the SFT stage marks its checkpoints)."""
    from src.tokenizers import load_tokenizer

    torch.manual_seed(0)
    # init_std well above the training default: pre-activations of order 1, where a wrong GELU
    # variant (tanh approximation) or a missing norm changes the logits visibly.
    cfg = {"vocab_size": vocab_size, "block_size": 64, "n_layer": 2, "n_head": 2, "n_embd": 64,
           "init_std": 0.15, **options}
    model = GPT(cfg).eval()
    with torch.no_grad():  # non-trivial norms, so a dropped or misplaced norm weight shows
        for name, p in model.named_parameters():
            if "ln" in name:
                p.add_(torch.randn_like(p) * 0.1)
    hparams = {"model": model.config_dict(), "tokenizer_dir": str(tokenizer_dir),
               "tokenizer_sha256": load_tokenizer(tokenizer_dir).sha256, "chat": chat}
    ckpt = {"state_dict": {f"model.{k}": v for k, v in model.state_dict().items()},
            "hyper_parameters": hparams, "global_step": 1}
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "last.ckpt"
    torch.save(ckpt, path)
    return path, model
