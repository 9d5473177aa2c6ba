"""Fixtures for tokenizer tests: small cleaned corpora written as parquet, and a config pointing at them.

The sentences are this project's own writing, recombined by a seeded generator into documents.
"""

from __future__ import annotations

import random
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from omegaconf import DictConfig

from src.config import load_config

SENTENCES = [
    "Утром над рекой стоял туман, и лодочник долго не решался отчалить.",
    "— Вы опять опоздали, — сказала она, не поднимая глаз от книги.",
    "В уездном городе N. все знали друг друга и всё друг о друге.",
    "Он прочёл письмо дважды, сложил его вчетверо и спрятал в карман сюртука.",
    "«Мы ещё увидим небо в алмазах», — подумал доктор и усмехнулся…",
    "Гости заговорили по-французски: «Quelle surprise, mon ami!»",
    "Немец-управляющий повторял: «Ordnung muss sein», и все кивали.",
    "В 1880 году имение продали за 12 500 рублей.",
    "Самовар шумел, за окном лаяли собаки, а в передней кто-то кашлял.",
    "Ей было двадцать три года, и жизнь казалась ей длинной, как зимний вечер.",
    "Старик снял шапку, перекрестился и медленно пошёл по дороге к станции.",
    "Дождь шёл третий день; дороги развезло, и почту не привозили.",
]
SUBTITLE_LINES = [
    "Привет.", "Ты где был?", "— Дома. — А я ждала тебя весь вечер!", "Не начинай…",
    "Пойдём, опоздаем.", "Сколько времени?", "Уже без десяти восемь.", "Ладно, я готов.",
]


def make_documents(n_docs: int, seed: int = 0, sentences_per_doc: int = 12) -> list[str]:
    rng = random.Random(seed)
    docs = []
    for _ in range(n_docs):
        paragraphs = []
        for _ in range(rng.randint(2, 5)):
            k = rng.randint(1, sentences_per_doc)
            paragraphs.append(" ".join(rng.choice(SENTENCES) for _ in range(k)))
        docs.append("\n".join(paragraphs))
    return docs


def write_literature(path: Path, texts: list[str], ids: list[Any] | None = None) -> Path:
    ids = ids if ids is not None else list(range(len(texts)))
    table = pa.table({
        "doc_id": [str(i) for i in ids], "author": ["Автор"] * len(texts),
        "title": [f"Текст {i}" for i in ids], "text": texts,
        "n_chars": [len(t) for t in texts],
    })
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)
    return path


def write_subtitles(path: Path, files: dict[str, list[str]], shuffle: bool = False,
                    language: str = "ru") -> Path:
    rows = [(fid, k, line) for fid, lines in files.items() for k, line in enumerate(lines)]
    if shuffle:
        random.Random(1).shuffle(rows)
    table = pa.table({
        "file_id": [r[0] for r in rows], "language": [language] * len(rows),
        "line_index": [r[1] for r in rows], "start_ms": [1000 * r[1] for r in rows],
        "end_ms": [1000 * r[1] + 900 for r in rows], "text": [r[2] for r in rows],
    })
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)
    return path


def make_subtitle_files(n_files: int, seed: int = 0) -> dict[str, list[str]]:
    rng = random.Random(seed)
    return {f"film{k:03d}.srt": [rng.choice(SUBTITLE_LINES) for _ in range(rng.randint(5, 20))]
            for k in range(n_files)}


def tokenizer_cfg(tmp: Path, **tokenizer: Any) -> DictConfig:
    """A validated root config whose tokenizer/tokenize sections point into `tmp`."""
    tok = {
        "kind": "bpe", "vocab_size": 400, "hard_vocab_limit": False,
        "literature_path": str(tmp / "clean" / "librus.parquet"),
        "subtitles_path": str(tmp / "clean" / "subtitles.parquet"),
        "out_dir": str(tmp / "tokenizer"), "num_threads": 1,
    }
    tok.update(tokenizer)
    tokenize = {"corpora": tok.get("corpora", ["literature", "subtitles"]),
                "tokenizer_dir": tok["out_dir"], "out_dir": str(tmp / "tokens"), "workers": 0,
                "chunk_chars": 5000}
    return load_config({"tracking": {"enabled": False}, "tokenizer": tok, "tokenize": tokenize})


@pytest.fixture
def corpora(tmp_path: Path) -> Path:
    """tmp_path/clean/{librus,subtitles}.parquet with 40 documents and 12 subtitle files."""
    write_literature(tmp_path / "clean" / "librus.parquet", make_documents(40))
    write_subtitles(tmp_path / "clean" / "subtitles.parquet", make_subtitle_files(12))
    return tmp_path


@pytest.fixture
def fx() -> SimpleNamespace:
    """The helpers above, for test modules (conftest cannot be imported under --import-mode=importlib)."""
    return SimpleNamespace(make_documents=make_documents, write_literature=write_literature,
                           write_subtitles=write_subtitles, make_subtitle_files=make_subtitle_files,
                           tokenizer_cfg=tokenizer_cfg)


@pytest.fixture(scope="session")
def bpe_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small BPE tokenizer trained once by the real stage on the fixture corpora; its directory."""
    from src.stage import StageRun
    from src.tokenizers.train import train_tokenizer

    tmp = tmp_path_factory.mktemp("bpe")
    write_literature(tmp / "clean" / "librus.parquet", make_documents(60, seed=3))
    write_subtitles(tmp / "clean" / "subtitles.parquet", make_subtitle_files(10, seed=3))
    cfg = tokenizer_cfg(tmp, vocab_size=500)
    train_tokenizer(cfg, StageRun("train_tokenizer", cfg, tracking_active=False))
    return tmp / "tokenizer"
