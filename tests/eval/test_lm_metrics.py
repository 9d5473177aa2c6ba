"""Held-out text by the stages' split rules, the scoring windows, bpb, and the unigram baseline."""

from __future__ import annotations

import json
import math
from collections import Counter

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from src.bench.unigram_baseline import unigram_log_probs, unigram_nats
from src.eval.lm_metrics import (
    HeldOut,
    _cap,
    dialogue_pairs,
    heldout,
    plain_pairs,
    score_model,
    unigram_baseline,
)
from src.generation.loading import LoadedModel
from src.models.gpt import GPT
from src.tokenizers.split import assign_splits
from tests.training.sft_fixtures import TINY_MODEL, conv, write_dialogues, write_tokenizer

WORDS = "the cat sat on a mat and the dog ran to the sea"


def write_corpora(tmp_path, n_docs=12, n_files=5):
    lit = [{"doc_id": f"book{i}", "text": f"{WORDS} {i}\n" * (1 + i % 3)} for i in range(n_docs)]
    lit.append({"doc_id": "blank", "text": "   \n"})  # blank documents are never in a split
    pq.write_table(pa.Table.from_pylist(lit), tmp_path / "librus.parquet")
    subs = [{"file_id": f"f{f}", "line_index": k, "text": f"line {k} of file {f}", "language": "en"}
            for f in range(n_files) for k in range(3)]
    pq.write_table(pa.Table.from_pylist(subs), tmp_path / "subtitles.parquet")
    return lit, subs


def lm_cfg(tmp_path, **changes):
    base = {"corpora": ["literature", "subtitles", "dialogues"],
            "literature_path": str(tmp_path / "librus.parquet"),
            "subtitles_path": str(tmp_path / "subtitles.parquet"), "subtitles_languages": [],
            "dialogues_path": str(tmp_path / "dialogues" / "dialogues.parquet"),
            "split_corpora": ["literature", "subtitles"], "val_fraction": 0.3, "split_salt": "",
            "tokens_dir": str(tmp_path / "tokens"), "unigram_alpha": 1.0, "max_bytes": 0, "batch_size": 4}
    base.update(changes)
    return Cfg(base)


class Cfg(dict):
    """Attribute and item access, as the eval.lm DictConfig gives."""

    __getattr__ = dict.__getitem__


def test_held_out_documents_are_the_tokenize_split(tmp_path):
    lit, subs = write_corpora(tmp_path)
    notes: list[str] = []
    held = heldout(lm_cfg(tmp_path, corpora=["literature", "subtitles"]), notes)
    # The tokenize stage's rule: non-blank documents of both corpora, ids prefixed, split together.
    ids = [f"literature:{d['doc_id']}" for d in lit if d["text"].strip()] + [f"subtitles:f{f}" for f in range(5)]
    splits, _ = assign_splits(ids, 0.3, "")
    want_lit = [d["text"] for d in lit if splits.get(f"literature:{d['doc_id']}") == "val"]
    want_subs = ["\n".join(f"line {k} of file {f}" for k in range(3)) for f in range(5)
                 if splits[f"subtitles:f{f}"] == "val"]
    assert held["literature"].texts == want_lit and want_lit
    assert held["subtitles"].texts == want_subs
    assert held["literature"].bytes == sum(len(t.encode()) for t in want_lit)


def test_a_missing_corpus_is_left_out_with_a_note(tmp_path):
    write_corpora(tmp_path)
    notes: list[str] = []
    held = heldout(lm_cfg(tmp_path, subtitles_path=str(tmp_path / "none.parquet")), notes)
    assert "subtitles" not in held and "dialogues" not in held and "literature" in held
    assert any("none.parquet not found" in n for n in notes)
    assert any("dialogues" in n and "not found" in n for n in notes)


def test_cap_keeps_whole_lines_and_counts_what_it_left_out():
    kept, size, seen, left = _cap(["aaaa\nbbbb\n", "cccc\n", "dddd\n"], 7)
    assert kept == ["aaaa\n"] and size == 5 and seen == 3 and left == 2
    assert _cap(["ab", "cd"], 0)[:2] == (["ab", "cd"], 4)


def test_dialogue_held_out_is_the_val_split_with_bad_conversations_counted(tmp_path):
    val = [conv("hi?", "hello."), conv("sun?", "sea.", "tea?", "red."), [{"role": "user", "content": "no reply"}]]
    write_dialogues(tmp_path / "dialogues", [conv("train only?", "yes.")], val)
    held = heldout(lm_cfg(tmp_path, corpora=["dialogues"]), [])["dialogues"]
    assert held.conversations == val[:2]
    assert held.dropped == Counter({"conversation_not_ending_with_assistant": 1})
    assert held.bytes == len("hello.") + len("sea.") + len("red.")


def test_plain_windows_predict_every_token_once(tmp_path):
    tok = write_tokenizer(tmp_path / "tok")
    prompts, completions = plain_pairs(tok, ["abc", "de"], block_size=3)
    stream = [tok.eot_id, *tok.encode("abc"), tok.eot_id, *tok.encode("de"), tok.eot_id]
    assert [t for c in completions for t in c] == stream[1:]
    assert all(len(p) == 1 and len(c) <= 3 for p, c in zip(prompts, completions, strict=True))
    assert prompts[1] == [stream[3]]  # each window reads the token before it


def test_dialogue_pairs_score_each_reply_with_its_end_and_drop_what_does_not_fit(tmp_path):
    tok = write_tokenizer(tmp_path / "tok")
    dropped: Counter = Counter()
    conversation = conv("hi?", "hello.", "and?", "x" * 40)
    prompts, completions, size = dialogue_pairs(tok, [conversation], block_size=16, dropped=dropped)
    end = tok.special_tokens["<|end|>"]
    assert completions == [[*tok.encode("hello."), end]]
    assert dropped == Counter({"turn_longer_than_context": 1}) and size == len("hello.")


def uniform_model(tok) -> LoadedModel:
    """A GPT whose logits are all zero: every token costs ln(vocab) nats."""
    model = GPT({**TINY_MODEL, "vocab_size": tok.vocab_size})
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
    return LoadedModel(model, tok, chat=True, source="uniform")


def test_bpb_is_summed_nats_over_ln2_over_bytes(tmp_path):
    tok = write_tokenizer(tmp_path / "tok")
    texts = ["the cat sat.\n", "on a mat.\n"]
    held = {"literature": HeldOut("literature", texts=texts, bytes=sum(len(t) for t in texts)),
            "dialogues": HeldOut("dialogues", conversations=[conv("hi?", "hello.")], bytes=6)}
    figures, dropped = score_model(uniform_model(tok), held, batch_size=2)
    n = len(tok.encode("".join(texts))) + 2  # every character and the end-of-text after each document
    lit = figures["literature"]
    assert lit["tokens"] == n and lit["bytes"] == 23
    assert lit["loss"] == pytest.approx(math.log(tok.vocab_size), rel=1e-5)
    assert lit["bpb"] == pytest.approx(n * math.log(tok.vocab_size) / math.log(2) / 23, rel=1e-5)
    assert figures["dialogues"]["tokens"] == len("hello.") + 1 and not dropped


def test_unigram_baseline_scores_the_same_ids_with_train_frequencies(tmp_path):
    tok = write_tokenizer(tmp_path / "tokenizer")
    tokens = tmp_path / "tokens"
    tokens.mkdir()
    train = np.asarray(tok.encode("the cat sat on the mat. " * 5), dtype=np.uint16)
    train.tofile(tokens / "train.bin")
    np.asarray([1, 2], dtype=np.uint16).tofile(tokens / "val.bin")
    (tokens / "meta.json").write_text(json.dumps({
        "vocab_size": tok.vocab_size, "dtype": "uint16", "eot_id": tok.eot_id,
        "splits": {"train": {"file": "train.bin", "n_tokens": len(train), "n_bytes": len(train), "n_docs": 1},
                   "val": {"file": "val.bin", "n_tokens": 2, "n_bytes": 2, "n_docs": 1}},
        "tokenizer": {"dir": str(tmp_path / "tokenizer"), "sha256": tok.sha256}}))
    held = {"literature": HeldOut("literature", texts=["a cat."], bytes=6)}
    out = unigram_baseline(lm_cfg(tmp_path, unigram_alpha=0.5), held, 64, [])
    ids = [*tok.encode("a cat."), tok.eot_id]
    counts = np.bincount(ids, minlength=tok.vocab_size)
    nats = unigram_nats(unigram_log_probs(np.bincount(train, minlength=tok.vocab_size), 0.5), counts)
    assert out["literature"]["tokens"] == len(ids)
    assert out["literature"]["bpb"] == pytest.approx(nats / math.log(2) / 6)
    # a letter seen in train costs less than the end-of-text id, which train never holds
    logp = unigram_log_probs(np.bincount(train, minlength=tok.vocab_size), 0.5)
    assert logp[tok.encode("t")[0]] > logp[tok.eot_id]


def test_unigram_baseline_without_token_files_is_a_note(tmp_path):
    notes: list[str] = []
    assert unigram_baseline(lm_cfg(tmp_path), {}, 64, notes) == {}
    assert "unigram baseline left out" in notes[0]
