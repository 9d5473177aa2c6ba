"""The Markov benchmark runs both writers on the same lines and reports comparable figures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from src.bench.markov import main, sentences_of

pytest.importorskip("markovify")

BOOK = ("It was a bright morning. The cat sat on the mat and the dog sat on the rug.\n\n"
        "“Where is the cat?” asked Mr. Brown. The dog ran to the door and the cat ran to the garden.\n\n"
        "The garden was green. The door was open and the morning was bright. Mrs. Brown sat on the rug.\n")


def test_bench_reports_both_writers(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    book = tmp_path / "book.txt"
    book.write_text(BOOK * 3, encoding="utf-8")
    assert "“Where is the cat?” asked Mr. Brown." in sentences_of(book)
    out = tmp_path / "r.json"
    assert main(["--text", str(book), "--order", "2", "--n", "50", "--repeats", "1",
                 "--default-calls", "10", "--context", "the cat", "--json", str(out)]) == 0
    r = json.loads(out.read_text())
    assert r["n"] == 50 and r["lines"] > 5
    assert 0 < r["ours_lines"] <= 50 and r["ours_seeded_lines"] > 0
    assert r["ours_s"] > 0 and r["markovify_unchecked_s"] > 0 and r["markovify_default_s"] > 0
    assert r["speedup_vs_unchecked"] == pytest.approx(r["markovify_unchecked_s"] / r["ours_s"])
    assert "markovify, test_output=False" in capsys.readouterr().out


def test_missing_text_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--text", str(tmp_path / "none.txt")]) == 1
    assert "none.txt: no such file" in capsys.readouterr().err
