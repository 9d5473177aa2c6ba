"""The Markov writer: pieces, counts, backoff, seeding from the conversation, the artifact, the stage."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest

from src.config import ConfigError, load_config
from src.errors import InputError
from src.generation.markov import (
    BOS,
    EOS,
    MarkovModel,
    _spans,
    join_pieces,
    script_of,
    split_pieces,
)
from src.generation.markov_stage import split_sentences
from src.stage import execute_stage

CORPUS = [
    "The cat sat on the mat.",
    "The dog sat on the rug.",
    "A cat ran to the door.",
    "The dog ran to the cat.",
    "Where is the cat?",
    "Кот сидит на окне.",
    "Собака сидит у двери.",
    "Где же кот, скажи мне?",
]


def pairs(lines: list[str]) -> set[tuple[str, str]]:
    out = set()
    for line in lines:
        pieces = split_pieces(line)
        pieces[0] = pieces[0].lstrip()
        out |= set(zip(["<s>", *pieces], [*pieces, "</s>"], strict=True))
    return out


def test_pieces_join_back_to_the_line() -> None:
    for line in ["Hello, world!", "— Да, — сказал он… «Иди».", "It's   a  well-known fact (1999)."]:
        pieces = split_pieces(line)
        assert join_pieces(pieces) == " ".join(line.split())
    assert split_pieces("Oh, no...") == ["Oh", ",", " no", "..."]


def test_every_step_of_a_generated_line_was_seen_in_the_corpus() -> None:
    model = MarkovModel.build(CORPUS, order=3, min_choices=2)
    seen = pairs(CORPUS)
    made = model.generate(200, seed=0, seeded_share=0.0).texts
    assert len(made) > 5
    for line in made:
        assert pairs([line]) <= seen, line


def test_backoff_recombines_where_longest_match_copies() -> None:
    copying = MarkovModel.build(CORPUS, order=4, min_choices=1)
    assert set(copying.generate(100, seed=1, seeded_share=0.0).texts) <= set(CORPUS)
    mixing = MarkovModel.build(CORPUS, order=4, min_choices=2)
    new = set(mixing.generate(100, seed=1, seeded_share=0.0).texts) - set(CORPUS)
    assert new, "with min_choices=2 the writer should leave the corpus's own lines"


def test_draws_follow_the_counts() -> None:
    lines = ["x a"] * 3 + ["x b"]
    model = MarkovModel.build(lines, order=2, min_choices=1)
    table = model.forward
    start = table.states(np.full((1, 2), BOS, dtype=np.int32), 1)
    pieces, lengths = table.walk(np.repeat(start, 20000), 3, np.random.default_rng(0))
    assert (lengths == 2).all() and (pieces[:, 2] == EOS).all()
    second = Counter(model.vocab[i] for i in pieces[:, 1])
    assert second.keys() == {" a", " b"}
    assert abs(second[" a"] / 20000 - 0.75) < 0.02


def test_walk_steps_is_walk_step_major_and_stops_when_every_line_ended() -> None:
    model = MarkovModel.build(CORPUS, order=3, min_choices=2)
    start = model.forward.states(np.full((1, 3), BOS, dtype=np.int32), 2)
    rows = np.repeat(start, 300)
    pieces, lengths = model.forward.walk(rows, 6, np.random.default_rng(4))
    steps, step_lengths = model.forward.walk_steps(rows, 6, np.random.default_rng(4))
    assert steps.shape == (6, 300) and (steps.T == pieces).all() and (step_lengths == lengths).all()
    # a line longer than the cap has no length; a finished one holds EOS from its end on
    assert (lengths == -1).any() and (lengths >= 0).any()
    for row, n in zip(pieces, lengths, strict=True):
        assert n == -1 and row[-1] != EOS or (row[n:] == EOS).all() and (row[:n] != EOS).all()
    # every corpus line is far shorter than 500 pieces: all end, and the lengths still count
    long, long_lengths = model.forward.walk_steps(rows, 500, np.random.default_rng(4))
    assert (long_lengths >= 0).all() and (long[long_lengths.max():] == EOS).all()
    assert (np.count_nonzero(long != EOS, axis=0) == long_lengths).all()


def test_spans_lists_strided_runs_in_order() -> None:
    got = _spans(np.array([10, 0, 7, 3]), np.array([-3, 5, 1, 2]), np.array([3, 0, 1, 2]))
    assert got.tolist() == [10, 7, 4, 7, 3, 5]
    assert _spans(np.array([4]), np.array([1]), np.array([0])).tolist() == []


def test_decoding_stops_once_n_distinct_lines_are_found(monkeypatch: pytest.MonkeyPatch) -> None:
    model = MarkovModel.build(CORPUS, order=2, min_choices=2)
    flat, seeds = model._walk_lines(100, 100, ["cat"], np.ones(1), np.random.default_rng(0), 40)
    monkeypatch.setattr(model, "_walk_lines", lambda *args: (flat, seeds))
    decoded: list[int] = []
    decode = model._decode
    monkeypatch.setattr(model, "_decode", lambda chunk: decoded.append(len(chunk)) or decode(chunk))
    first: dict[str, str | None] = {}
    for text, word in zip(model._decode(flat), seeds, strict=True):
        first.setdefault(text, word)  # the first line of each text wins
    every = list(first.items())
    assert len(every) > 8
    decoded.clear()
    got = model.generate(8, ["cat"], seed=0)
    assert list(zip(got.texts, got.seeds, strict=True)) == every[:8]
    assert sum(decoded) < len(flat)  # the later lines were never decoded


def test_the_writer_does_not_load_torch() -> None:
    code = ("import sys, src.generation.markov, src.generation.markov_stage; "
            "sys.exit('torch' in sys.modules or 'src.models' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_lines_keep_to_one_script() -> None:
    model = MarkovModel.build(CORPUS, order=2, min_choices=2)
    for line in model.generate(300, seed=3, seeded_share=0.0).texts:
        assert script_of(line) in ("latin", "cyrillic")
        letters = [ch for ch in line if ch.isalpha()]
        assert all(script_of(ch) == script_of(line) for ch in letters), line


def test_candidates_grow_from_words_of_the_conversation() -> None:
    model = MarkovModel.build(CORPUS, order=3, min_choices=2)
    got = model.generate(60, ["Have you seen my DOOR?"], seed=0, seeded_share=1.0)
    assert got.texts and set(got.seeds) <= {"have", "you", "seen", "my", "door"} - {"have", "you", "seen", "my"}
    for text in got.texts:
        assert "door" in text.lower()
    # a word in the middle of corpus lines: candidates reach it from a line start and go on after it
    mid = model.generate(60, ["sat"], seed=0, seeded_share=1.0).texts
    assert all(" sat " in t for t in mid) and all(t[0].isupper() for t in mid)
    # several words: every line holds the word it grew from, spelled as the corpus spells it
    many = model.generate(200, ["Where is the dog, the cat and the door?"], seed=5, seeded_share=1.0)
    assert len(set(many.seeds)) >= 4
    for text, word in zip(many.texts, many.seeds, strict=True):
        assert word in re.findall(r"\w+", text.lower()), (word, text)
    # nothing known: every candidate comes from a line start
    cold = model.generate(20, ["zzz qqq"], seed=0, seeded_share=1.0)
    assert cold.texts and set(cold.seeds) == {None}


def test_rare_words_are_preferred_seeds() -> None:
    model = MarkovModel.build(CORPUS, order=2)
    words, weights = model.seeds(["the door"], seed_lines=1)
    assert words == ["the", "door"] and weights[1] > weights[0]


def test_same_seed_same_candidates_and_distinct_lines() -> None:
    model = MarkovModel.build(CORPUS, order=3)
    a = model.generate(50, ["cat"], seed=7)
    assert a.texts == model.generate(50, ["cat"], seed=7).texts
    assert len(set(a.texts)) == len(a.texts)
    assert a.texts != model.generate(50, ["cat"], seed=8).texts


def test_save_load_round_trip(tmp_path: Path) -> None:
    model = MarkovModel.build(CORPUS, order=3, meta={"note": "x"})
    model.save(tmp_path / "m")
    loaded = MarkovModel.load(tmp_path / "m" / "meta.json")
    assert loaded.meta == model.meta and loaded.vocab == model.vocab
    assert loaded.generate(40, ["кот"], seed=2).texts == model.generate(40, ["кот"], seed=2).texts
    assert {p.name for p in (tmp_path / "m").iterdir()} == {"markov.safetensors", "vocab.json", "meta.json"}


def test_load_names_what_is_wrong(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="vocab.json, meta.json missing"):
        MarkovModel.load(tmp_path)
    MarkovModel.build(CORPUS, order=2).save(tmp_path)
    meta = json.loads((tmp_path / "meta.json").read_text())
    (tmp_path / "meta.json").write_text(json.dumps({**meta, "format_version": 99}))
    with pytest.raises(InputError, match="format_version 99"):
        MarkovModel.load(tmp_path)
    (tmp_path / "meta.json").write_text(json.dumps(meta))
    (tmp_path / "markov.safetensors").write_bytes(b"junk")
    with pytest.raises(InputError, match="unreadable Markov model"):
        MarkovModel.load(tmp_path)


def test_an_empty_corpus_is_an_input_error() -> None:
    with pytest.raises(InputError, match="no line with a word"):
        MarkovModel.build(["", "   "], order=2)


def test_sentences_split_at_ends_not_at_abbreviations() -> None:
    text = "Mr. Darcy came. “Yes,” she said. Why? Он ушёл. — Да! Mrs. Bennet smiled."
    assert split_sentences(text) == ["Mr. Darcy came.", "“Yes,” she said.", "Why?", "Он ушёл.", "— Да!",
                                     "Mrs. Bennet smiled."]


# --- the stage -----------------------------------------------------------------------------------
def stage_cfg(tmp: Path, **section: Any) -> Any:
    subs = pl.DataFrame({"language": ["en"] * 4 + ["de"], "text": CORPUS[:4] + ["Guten Tag, mein Freund."]})
    subs.write_parquet(tmp / "subs.parquet")
    book = tmp / "book.txt"
    book.write_text("Было утро.\n— Кот сидит на окне, — сказал он.\n— Где же кот?\nОни ушли.\n", encoding="utf-8")
    base = {"out_dir": str(tmp / "model"), "report_dir": str(tmp / "report"), "order": 3,
            "subtitles": {"path": str(tmp / "subs.parquet"), "languages": ["en"]},
            "literature": {"path": "", "text_paths": [str(book)]}}
    base.update(section)
    return load_config({"tracking": {"enabled": False}, "markov": base})


def test_stage_builds_the_model_and_reports(tmp_path: Path) -> None:
    summary = execute_stage("markov", stage_cfg(tmp_path, report_samples=5))
    model = MarkovModel.load(tmp_path / "model")
    assert model.meta["lines"] == 6 and model.meta["order"] == 3
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert report["counts"]["kept_subtitles"] == 4 and report["counts"]["kept_literature"] == 2
    assert report["counts"]["subtitles_lines_skipped_language"] == 1
    assert report["counts"]["paragraphs_narrative"] == 2
    assert 0 < len(report["samples"]) <= 5
    assert summary.wrote["model_lines"] == 6


def test_stage_counts_what_it_leaves_out(tmp_path: Path) -> None:
    summary = execute_stage("markov", stage_cfg(tmp_path, max_line_chars=22, min_pieces=5))
    # "The cat sat on the mat." is 23 characters; the speech "Где же кот?" has 4 pieces
    assert summary.dropped["subtitles_too_long"] >= 1
    assert summary.dropped["literature_too_few_pieces"] == 1


def test_stage_names_missing_input_and_bad_config(tmp_path: Path) -> None:
    cfg = stage_cfg(tmp_path, subtitles={"path": str(tmp_path / "nope.parquet")})
    with pytest.raises(InputError, match="nope.parquet: not found"):
        execute_stage("markov", cfg)
    with pytest.raises(ConfigError, match="markov.literature.mode"):
        stage_cfg(tmp_path, literature={"mode": "poems"})
