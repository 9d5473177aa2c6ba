"""`python -m src.chat --rerank`: best-of-N replies from a Markov model and/or the LM, a real (tiny,
untrained) exported reranker scoring them, /top, timings, and bad flags named in one line."""

from __future__ import annotations

import io
import re
import sys
from pathlib import Path

import pytest

from src.chat import main as chat_main
from src.generation.markov import MarkovModel
from src.generation.reranker import export_own
from tests.models.test_cross_encoder import own_model
from tests.test_chat import write_checkpoint

CORPUS = ["hello there, how are you?", "i am fine, thanks.", "where is the cat?", "the cat is on the mat.",
          "how is the dog?", "the dog is fine, thanks.", "are you there?", "yes, i am here."]
TIMING = re.compile(r"\[best of (\d+) \((.*?)\) in \d+ ms: (.*?)\]")


@pytest.fixture
def files(tmp_path: Path) -> dict[str, str]:
    MarkovModel.build(CORPUS, order=3).save(tmp_path / "markov")
    model = own_model()
    export_own(model, model.tokenizer, tmp_path / "rr")
    return {"markov": str(tmp_path / "markov"), "rr": str(tmp_path / "rr"), "tmp": str(tmp_path)}


def run_chat(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], args: list[str],
             script: str) -> str:
    monkeypatch.setattr(sys, "stdin", io.StringIO(script))
    chat_main([*args, "--precision", "fp32", "--device", "cpu", "--seed", "0"])
    return capsys.readouterr().out


def test_markov_candidates_reranked_with_top_and_timings(files, monkeypatch, capsys) -> None:
    script = "hello, how are you?\n/top 3\n/n 10\nwhere is the dog?\n/candidates lm\n/bogus\n/reset\n/top\n/quit\nnot read\n"
    out = run_chat(monkeypatch, capsys, ["--rerank", files["rr"], "--markov", files["markov"], "--n", "40"],
                   script)
    assert "reranked mode: best of 40 candidates from markov" in out
    replies = re.findall(r"^bot> (.*)$", out, flags=re.M)
    timings = TIMING.findall(out)
    assert len(replies) == 2 and len(timings) == 2
    assert 1 < int(timings[0][0]) <= 40 and timings[0][1].startswith("markov ")
    assert "markov" in timings[0][2] and "score" in timings[0][2]
    assert int(timings[1][0]) <= 10 and "n = 10" in out
    top = re.findall(r"^\s+(\d)\. (\d\.\d{4}) markov(?: <\w+>)?  (.*)$", out, flags=re.M)
    assert [t[0] for t in top] == ["1", "2", "3"]
    assert top[0][2] == replies[0]  # the reply is the best-scored candidate
    assert float(top[0][1]) >= float(top[1][1]) >= float(top[2][1])
    assert "/candidates: candidates=lm needs a language model" in out
    assert "unknown command '/bogus'" in out and "conversation cleared" in out
    assert "/top: no reply yet" in out and "not read" not in out


def test_lm_and_both_candidates_come_from_the_model(files, monkeypatch, capsys) -> None:
    ckpt = write_checkpoint(Path(files["tmp"]), chat=True)
    out = run_chat(monkeypatch, capsys, [str(ckpt), "--rerank", files["rr"], "--candidates", "lm", "--n", "12",
                                         "--max-tokens", "6", "--lm-batch", "5"], "hello\n/quit\n")
    (n, made, phases), = TIMING.findall(out)
    assert made.startswith("lm ") and "lm" in phases and int(n) >= 1
    out = run_chat(monkeypatch, capsys, [str(ckpt), "--rerank", files["rr"], "--candidates", "both",
                                         "--markov", files["markov"], "--n", "12", "--max-tokens", "6"],
                   "where is the cat?\n/top 20\n/quit\n")
    (n, made, phases), = TIMING.findall(out)
    assert "markov" in made and "markov" in phases and "lm" in phases


@pytest.mark.parametrize(("args", "message"), [
    (["--candidates", "lm"], "--candidates lm needs a MODEL"),
    (["--markov", "/nonexistent/markov"], "/nonexistent/markov: not a Markov model"),
    (["--n", "0"], "--n must be >= 1"),
])
def test_bad_flags_are_one_line(files, monkeypatch, capsys, args, message) -> None:
    base = ["--rerank", files["rr"]] + ([] if "--markov" in args else ["--markov", files["markov"]])
    with pytest.raises(SystemExit) as exc:
        run_chat(monkeypatch, capsys, [*base, *args], "/quit\n")
    assert message in str(exc.value)


def test_missing_reranker_and_missing_model(files, monkeypatch, capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        run_chat(monkeypatch, capsys, ["--rerank", files["tmp"] + "/none", "--markov", files["markov"]], "")
    assert "not a reranker export" in str(exc.value)
    with pytest.raises(SystemExit) as exc:
        run_chat(monkeypatch, capsys, [], "")
    assert "a MODEL is needed" in str(exc.value)
