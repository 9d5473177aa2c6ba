"""The build_dialogues stage: filters and their counts, bad rows, subtitle windows, stable split."""

from __future__ import annotations

import json
import string
from collections import Counter
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from src.config import load_config
from src.config.sections.build_dialogues import DialogueFilter
from src.data.dialogues.conversation import conversation_problem
from src.data.dialogues.datasets import FileCounts, read_dataset
from src.data.dialogues.sample_data import ROWS, write_sample
from src.data.dialogues.windows import subtitle_windows
from src.stage import execute_stage
from src.tokenizers.char import CharTokenizer

MESSAGE = pa.struct([("role", pa.string()), ("content", pa.string())])
FILTERS = [DialogueFilter("overall_score", ">=", 6), DialogueFilter("safety", ">=", 8),
           DialogueFilter("pii_leak", "==", 0)]


def conv(*turns: str) -> list[dict[str, str]]:
    return [{"role": "user" if i % 2 == 0 else "assistant", "content": t} for i, t in enumerate(turns)]


def write_dataset(path: Path, rows: list[dict[str, Any]]) -> Path:
    columns = {k: [r.get(k) for r in rows] for k in rows[0]}
    types = {"conversation": pa.list_(MESSAGE)}
    pq.write_table(pa.table({k: pa.array(v, type=types.get(k)) for k, v in columns.items()}), path)
    return path


def test_parquet_filters_and_counts(tmp_path: Path) -> None:
    scores = [(9, 10, 0), (5, 10, 0), (7, 3, 0), (8, 9, 1), (-1, 9, 0), (6, -1, 0), (10, 10, 0)]
    rows = [{"conversation": conv(f"q{i}", f"a{i}"), "overall_score": o, "safety": s, "pii_leak": p}
            for i, (o, s, p) in enumerate(scores)]
    path = write_dataset(tmp_path / "d.parquet", rows)
    counts = FileCounts(str(path))
    kept = list(read_dataset(path, FILTERS, counts, []))
    assert [r["conversation"][0]["content"] for r in kept] == ["q0", "q4", "q5", "q6"]
    assert [(f.name, f.before, f.after, f.not_applicable) for f in counts.filters] == [
        ("overall_score >= 6", 7, 6, 1), ("safety >= 8", 6, 5, 1), ("pii_leak == 0", 5, 4, 0)]
    assert kept[1]["overall_score"] is None  # -1 "not applicable" is not a score
    # drop when not applicable; a column the file lacks counts as not applicable for every row
    strict = [DialogueFilter("overall_score", ">=", 6, "drop"), DialogueFilter("refusal", "==", 0, "drop")]
    counts = FileCounts(str(path))
    assert list(read_dataset(path, strict, counts, [])) == []
    assert [(f.before, f.after) for f in counts.filters] == [(7, 5), (5, 0)]


def test_jsonl_messages_and_broken_lines(tmp_path: Path) -> None:
    path = tmp_path / "chat.jsonl"
    lines = [
        json.dumps({"messages": conv("Привет", "Здравствуйте"), "overall_score": 8}, ensure_ascii=False),
        "{not json",
        json.dumps({"messages": conv("Как дела?", "Хорошо"), "overall_score": "3"}, ensure_ascii=False),
        json.dumps([1, 2]),
        json.dumps({"conversation": conv("Да?", "Да."), "safety": 9, "topic": "t"}, ensure_ascii=False),
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    counts, bad = FileCounts(str(path)), []
    kept = list(read_dataset(path, FILTERS, counts, bad))
    assert [r["conversation"][1]["content"] for r in kept] == ["Здравствуйте", "Да."]
    assert counts.rows == 5 and counts.invalid_json_lines == 2
    assert bad[0].endswith("chat.jsonl:2: Expecting property name enclosed in double quotes")
    assert counts.filters[0].before == 3 and counts.filters[0].after == 2


@pytest.mark.parametrize("messages, reason", [
    ([], "no_turns"),
    ([{"content": "x"}, {"role": "assistant", "content": "y"}], "missing_role"),
    ([{"role": "bot", "content": "x"}], "unknown_role"),
    (conv("x", " "), "empty_content"),
    (conv("x", "y", "z"), "not_ending_with_assistant"),
    ([*conv("x"), *conv("y", "z")], "two_user_turns_in_a_row"),
    ([{"role": "assistant", "content": "y"}], "starts_with_assistant"),
    (conv("x <|end|>", "y"), "special_token_in_content"),
    ([*conv("x", "y"), {"role": "system", "content": "s"}, *conv("a", "b")], "system_not_first"),
    ([{"role": "user", "content": ["x"]}, {"role": "assistant", "content": "y"}], "content_not_string"),
    ([{"role": "system", "content": "s"}, *conv("x", "y", "z", "w")], None),
])
def test_conversation_contract(messages: Any, reason: str | None) -> None:
    assert conversation_problem(messages) == reason


def write_subtitles(path: Path, lines: list[tuple[str, int, int, str]]) -> Path:
    """(file_id, scene, start_ms, text) rows; written shuffled to prove the order is rebuilt."""
    rows = [{"file_id": f, "language": "ru", "line_index": i, "start_ms": start, "end_ms": start + 1000,
             "scene": scene, "text": text} for i, (f, scene, start, text) in enumerate(lines)]
    pl.DataFrame(rows).reverse().write_parquet(path)
    return path


def test_subtitle_windows_never_cross_files_scenes_or_pauses(tmp_path: Path) -> None:
    lines = [("a", 0, 0, "a1"), ("a", 0, 1500, "a2"), ("a", 0, 3000, "a3"), ("a", 0, 4500, "a4"),
             ("a", 0, 30_000, "a5 after a pause"), ("a", 0, 31_500, "a6"),
             ("a", 1, 33_000, "a7 new scene"), ("b", 0, 34_000, "b1"), ("b", 0, 35_000, "b2"),
             ("b", 0, 36_000, "b3")]
    path = write_subtitles(tmp_path / "subs.parquet", lines)
    counts: Counter[str] = Counter()
    wins = list(subtitle_windows(path, ["ru"], 5000, 2, 8, 1000, counts))
    assert [w.turns for w in wins] == [["a1", "a2", "a3", "a4"], ["a5 after a pause", "a6"], ["b1", "b2"]]
    assert counts["runs_split_at_pause"] == 1
    assert counts["turns_dropped_run_too_short"] == 1  # the lone line of scene 1
    assert counts["turns_dropped_odd_last_turn"] == 1  # b3
    # windows of at most max_turns, even, consecutive
    wins = list(subtitle_windows(path, ["ru"], 5000, 2, 2, 1000, Counter()))
    assert [w.turns for w in wins][:2] == [["a1", "a2"], ["a3", "a4"]]


def char_tokenizer(directory: Path) -> Path:
    chars = string.printable + "абвгдежзийклмнопрстуфхцчшщъыьэюяАБВГДЕЖЗИЙКЛМНОПРСТУФХЦЧШЩЪЫЬЭЮЯёЁ«»—…„“"
    CharTokenizer(sorted(set(chars))).save(directory)
    return directory


def stage_cfg(tmp: Path, **section: Any) -> Any:
    base = {
        "output": str(tmp / "out" / "dialogues.parquet"), "report_dir": str(tmp / "report"),
        "tokenizer_dir": str(tmp / "tok"), "subtitles": {"enabled": False},
        "literature": {"enabled": False}, "sample": {"path": str(tmp / "sample.parquet")},
    }
    base.update(section)
    return load_config({"tracking": {"enabled": False}, "build_dialogues": base})


def test_stage_on_the_sample_counts_every_row(tmp_path: Path) -> None:
    char_tokenizer(tmp_path / "tok")
    write_sample(tmp_path / "sample.parquet")
    summary = execute_stage("build_dialogues", stage_cfg(tmp_path))
    out = pl.read_parquet(tmp_path / "out" / "dialogues.parquet")
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    s = report["sources"]["sample"]
    notes = [r[-1] for r in ROWS]
    broken = sum(1 for r in ROWS if r[5] == "broken")
    assert s["read"] == len(ROWS)
    assert sum(s["bad_rows"].values()) == broken
    assert set(s["bad_rows"]) == {"two_user_turns_in_a_row", "not_ending_with_assistant", "empty_content",
                                  "unknown_role", "special_token_in_content", "missing_role"}
    filtered = s["read"] - s["filters"][0]["kept"]
    assert filtered == sum(1 for n in notes if n.startswith(("wrong", "off-topic", "unsafe", "invented", "too terse")))
    # every input row is accounted for: written, bad, filtered or duplicate
    assert len(out) == s["written"] == len(ROWS) - broken - filtered - s["duplicates"]
    for c in out["conversation"].to_list():
        assert conversation_problem(c) is None
    assert set(out["split"]) <= {"train", "val"} and (out["split"] == "val").sum() >= 1
    assert out["doc_id"].n_unique() == len(out)
    assert (out["n_loss_tokens"] < out["n_tokens"]).all()
    assert 0 < report["loss_share"] < 1 and report["tokens"]["p50"] > 0
    assert "⟦" in (tmp_path / "report" / "report.md").read_text()
    assert summary.dropped["sample_filtered_out"] == filtered


def test_split_is_stable_when_conversations_are_added(tmp_path: Path) -> None:
    char_tokenizer(tmp_path / "tok")
    rows = [{"conversation": conv(f"вопрос {i}", f"ответ {i}"), "overall_score": 8} for i in range(60)]
    splits = []
    for n in (30, 60):
        write_dataset(tmp_path / "sample.parquet", rows[:n])
        # the hash split alone (the val floor may move conversations while the input is small)
        execute_stage("build_dialogues", stage_cfg(tmp_path, val_fraction=0.2, val_min_conversations=0))
        out = pl.read_parquet(tmp_path / "out" / "dialogues.parquet")
        splits.append(dict(zip(out["doc_id"], out["split"], strict=True)))
    assert all(splits[1][d] == s for d, s in splits[0].items())
    assert 0 < sum(s == "val" for s in splits[1].values()) < 60


def test_output_is_published_atomically(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """dialogues.parquet is fsync'ed before its rename and no scratch file is left beside it."""
    import src.atomic_io as atomic_io

    synced: list[str] = []
    real_fsync = atomic_io.fsync_file
    monkeypatch.setattr(atomic_io, "fsync_file", lambda p: (synced.append(Path(p).name), real_fsync(p)))
    char_tokenizer(tmp_path / "tok")
    write_sample(tmp_path / "sample.parquet")
    execute_stage("build_dialogues", stage_cfg(tmp_path))
    assert any(name.startswith(".dialogues.parquet.") for name in synced), synced
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["dialogues.parquet"]


def test_tokenizer_dir_composes_without_the_tokenizer_section() -> None:
    """A config without the tokenizer group (test and benchmark configs) still composes; with it,
    build_dialogues and sft follow tokenizer.out_dir and sft starts from pretrain.ckpt_dir."""
    from src.config import compose

    bare = load_config(compose(["~tokenizer", "~tokenize", "~pretrain"]))
    assert bare.build_dialogues.tokenizer_dir == bare.sft.tokenizer_dir == "data/tokenizer"
    assert bare.sft.init_checkpoint == "data/models/pretrain/best.ckpt"
    moved = load_config(compose(["tokenizer.out_dir=elsewhere/tok", "pretrain.ckpt_dir=elsewhere/pre"]))
    assert moved.build_dialogues.tokenizer_dir == moved.sft.tokenizer_dir == "elsewhere/tok"
    assert moved.sft.init_checkpoint == "elsewhere/pre/best.ckpt"


def test_val_floor_moves_the_lowest_scored_train_conversations(tmp_path: Path) -> None:
    """Fewer val conversations than val_min_conversations: the train ones of lowest split score move
    (whole documents under split_by=document), never the last train one; said in the summary."""
    from src.data.dialogues.conversation import conversation_hash
    from src.tokenizers.split import split_score

    char_tokenizer(tmp_path / "tok")
    rows = [{"conversation": conv(f"вопрос {i}", f"ответ {i}"), "overall_score": 8} for i in range(20)]
    write_dataset(tmp_path / "sample.parquet", rows)
    summary = execute_stage("build_dialogues", stage_cfg(tmp_path, val_fraction=0.01, val_min_conversations=5))
    out = pl.read_parquet(tmp_path / "out" / "dialogues.parquet")
    assert (out["split"] == "val").sum() == 5 and summary.wrote["val_conversations"] == 5
    assert any("val_min_conversations=5" in n for n in summary.notes)
    scores = [split_score(conversation_hash(c), "") for c in out["conversation"].to_list()]
    val_scores = sorted(s for s, split in zip(scores, out["split"], strict=True) if split == "val")
    assert val_scores == sorted(scores)[:5]  # the lowest split scores, the first to be val anyway
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert (report["sources"]["sample"]["train"], report["sources"]["sample"]["val"]) == (15, 5)

    # three conversations and a floor of eight: two move, one stays to train on
    write_dataset(tmp_path / "sample.parquet", rows[:3])
    execute_stage("build_dialogues", stage_cfg(tmp_path, val_fraction=0.01, val_min_conversations=8))
    out = pl.read_parquet(tmp_path / "out" / "dialogues.parquet")
    assert (out["split"] == "train").sum() == 1 and (out["split"] == "val").sum() == 2


def test_val_floor_moves_whole_documents(tmp_path: Path) -> None:
    """split_by=document: the floor moves a whole book (both of its conversations), not one of them."""
    char_tokenizer(tmp_path / "tok")
    book = tmp_path / "books"
    book.mkdir()
    for name in ("a", "b", "c"):
        (book / f"{name}.txt").write_text("\n\n".join(f"— Реплика {name}{k}, — сказал он." for k in range(4)),
                                           encoding="utf-8")
    execute_stage("build_dialogues", stage_cfg(
        tmp_path, val_fraction=0.001, val_min_conversations=1, split_by="document", sample={"enabled": False},
        literature={"enabled": True, "path": "", "text_paths": [str(book)],
                    "window": {"min_turns": 2, "max_turns": 2}}))
    out = pl.read_parquet(tmp_path / "out" / "dialogues.parquet").with_columns(
        pl.col("doc_id").str.split("#").list.first().alias("book"))
    assert len(out) == 6 and out["book"].n_unique() == 3
    val = out.filter(pl.col("split") == "val")
    assert len(val) == 2 and val["book"].n_unique() == 1
