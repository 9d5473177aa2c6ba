"""Probe and prompt sets: loader errors, the shipped files, log-prob and keyword scoring, cropping."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from torch import Tensor, nn

from src.errors import InputError
from src.eval import probes as P
from src.generation import chat_template
from src.generation.loading import LoadedModel, load_for_generation
from src.tokenizers.char import CharTokenizer
from tests.training.kto_fixtures import write_chat_checkpoint
from tests.training.sft_fixtures import write_tokenizer

SEEN_LOGIT = 4.0


class CopyModel(nn.Module):
    """A stand-in LM whose log-probs we know: it puts logit SEEN_LOGIT on every token already in its
    input (up to and including the current one) and 0 on the rest. It recalls what it read and
    cannot infer anything it did not."""

    def __init__(self, vocab_size: int, block_size: int) -> None:
        super().__init__()
        self.vocab_size, self.block_size = vocab_size, block_size
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, idx: Tensor) -> tuple[Tensor, None]:
        seen = torch.zeros(*idx.shape, self.vocab_size)
        seen.scatter_(2, idx[:, :, None], 1.0)
        return seen.cummax(dim=1).values * SEEN_LOGIT + self.dummy * 0, None


def copy_logprob(prompt: list[int], completion: list[int], vocab: int) -> float:
    """Mean per-token log-prob of `completion` under CopyModel, computed directly."""
    total, seen = 0.0, set(prompt)
    for token in completion:
        z = len(seen) * math.exp(SEEN_LOGIT) + (vocab - len(seen))
        total += (SEEN_LOGIT if token in seen else 0.0) - math.log(z)
        seen.add(token)
    return total / len(completion)


def tokenizer() -> CharTokenizer:
    return CharTokenizer("abcdefghijklmnopqrstuvwxyz .,?!\n—")


def loaded_copy(block: int = 256, chat: bool = True) -> LoadedModel:
    tok = tokenizer()
    return LoadedModel(CopyModel(tok.vocab_size, block), tok, chat, Path("copy-model"))


def probe(pid: str, messages: list[tuple[str, str]], right: list[str], wrong: list[str], keywords: list[str],
          wrong_keywords: list[str], **extra) -> dict:
    return {"id": pid, "language": "en", "kind": "place", "tests": "test",
            "messages": [{"role": r, "content": c} for r, c in messages],
            "right": right, "wrong": wrong, "keywords": keywords, "wrong_keywords": wrong_keywords, **extra}


RECALL = probe("recall", [("user", "i live in paris."), ("assistant", "ok."), ("user", "where do i live?")],
               ["paris"], ["rome"], ["paris"], ["rome"])
INFER = probe("infer", [("user", "i am from italy."), ("assistant", "nice."), ("user", "what should i cook?")],
              ["pizza"], ["sushi"], ["pizz"], ["sushi"])


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


def loaded_from(tmp_path: Path, *rows: dict) -> list[P.Probe]:
    return P.load_probes([write_jsonl(tmp_path / "p.jsonl", list(rows))])


# --- loader ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("line", "message"), [
    ("{not json", "not valid JSON"),
    ("[1, 2]", "expected a JSON object"),
    ({**RECALL, "colour": "red"}, "unknown field(s) ['colour']"),
    ({k: v for k, v in RECALL.items() if k != "right"}, "missing field(s) ['right']"),
    ({k: v for k, v in RECALL.items() if k != "wrong"}, "missing field(s) ['wrong']"),
    ({**RECALL, "wrong": []}, "'wrong' must be a list of 1-3 strings"),
    ({**RECALL, "right": ["a1", "a2", "a3", "a4"]}, "'right' must be a list of 1-3 strings"),
    ({**RECALL, "messages": []}, "'messages' must be a non-empty list"),
    ({**RECALL, "messages": RECALL["messages"][:2]}, "the last message must be the user's"),
    ({**RECALL, "messages": [{"role": "user", "content": "hi", "name": "x"}]}, "exactly 'role' and 'content'"),
    ({**RECALL, "messages": [{"role": "bot", "content": "hi"}, *RECALL["messages"]]}, "unknown role 'bot'"),
    ({**RECALL, "language": "de"}, "'language' must be one of"),
    ({**RECALL, "kind": "weather"}, "'kind' must be one of"),
    ({**RECALL, "fact": 2}, "'fact' must index a message before the last one"),
    ({**RECALL, "keywords": ["Paris"]}, "must be lower case"),
    ({**RECALL, "keywords": ["lyon"]}, "right continuation 'paris' must hold one of its keywords"),
    ({**RECALL, "wrong": ["rome, not paris"]}, "wrong continuation 'rome, not paris'"),
    ({**RECALL, "keywords": ["paris", "live"]}, "the last question holds a keyword"),
    ({**RECALL, "right": ["<|end|> paris"]}, "special token"),
])
def test_a_bad_line_names_the_file_and_line(tmp_path: Path, line, message: str) -> None:
    path = write_jsonl(tmp_path / "probes.jsonl", [INFER, "", line])
    with pytest.raises(InputError) as err:
        P.load_probes([path])
    assert f"{path}:3: " in str(err.value) and message in str(err.value)


def test_duplicate_ids_across_files_and_empty_files(tmp_path: Path) -> None:
    first = write_jsonl(tmp_path / "a.jsonl", [RECALL])
    second = write_jsonl(tmp_path / "b.jsonl", [INFER, RECALL])
    with pytest.raises(P.ProbeFileError, match=rf"{second}:2: duplicate id 'recall' \(first at {first}:1\)"):
        P.load_probes([first, second])
    with pytest.raises(P.ProbeFileError, match="no probes"):
        P.load_probes([write_jsonl(tmp_path / "empty.jsonl", [""])])
    with pytest.raises(P.ProbeFileError, match="missing.jsonl: cannot be read"):
        P.load_probes([tmp_path / "missing.jsonl"])
    with pytest.raises(InputError, match="unknown probe language"):
        P.load_probes(languages=["de"])


def test_prompt_loader_errors(tmp_path: Path) -> None:
    good = {"id": "p", "language": "ru", "messages": [{"role": "user", "content": "привет"}]}
    assert P.load_prompts(write_jsonl(tmp_path / "ok.jsonl", [good]))[0]["tags"] == []
    for bad, message in [({**good, "lang": "ru"}, "unknown field(s) ['lang']"),
                         ({**good, "messages": [{"role": "assistant", "content": "x"}]}, "the last message"),
                         ({k: v for k, v in good.items() if k != "id"}, "missing field(s) ['id']")]:
        path = write_jsonl(tmp_path / "bad.jsonl", [good | {"id": "q"}, bad])
        with pytest.raises(P.ProbeFileError, match=rf"{path}:2: .*{message[:12]}"):
            P.load_prompts(path)


def test_shipped_sets_load_with_enough_items_per_language() -> None:
    for lang in P.LANGUAGES:
        probes = P.load_probes(languages=[lang])
        assert len(probes) >= 30 and {p.language for p in probes} == {lang}
        assert {p.distance for p in probes} >= {1, 2, 3, 4}
        assert len({p.kind for p in probes}) >= 8
    assert len(P.load_probes()) == sum(len(P.load_probes(languages=[lang])) for lang in P.LANGUAGES)
    prompts = P.load_prompts()
    for lang in P.LANGUAGES:
        mine = [p for p in prompts if p["language"] == lang]
        assert len(mine) >= 24 and any(len(p["messages"]) > 1 for p in mine)
    assert (P.SETS_DIR / "README.md").is_file()


# --- keywords ----------------------------------------------------------------------------------------
def test_keywords_match_word_starts_and_whole_numbers() -> None:
    assert P.has_keyword("Я живу в Казани.", ["казан"])
    assert not P.has_keyword("примерно так", ["рим"]) and P.has_keyword("в Риме", ["рим"])
    assert P.has_keyword("Зелёное!", ["зелен"])  # ё read as е
    assert P.has_keyword("room 7.", ["7"]) and not P.has_keyword("17 or 70", ["7"])
    assert not P.has_keyword("anything", [])


def test_keyword_verdict_right_wrong_and_vetoed(tmp_path: Path) -> None:
    (p,) = loaded_from(tmp_path, RECALL)
    assert P.keyword_verdict("You live in Paris.", p)
    assert not P.keyword_verdict("In Rome, I think.", p)
    assert not P.keyword_verdict("Paris or Rome?", p)  # a wrong stem vetoes a right one
    assert not P.keyword_verdict("I don't know.", p)


# --- scoring -----------------------------------------------------------------------------------------
def fake_replies(texts: dict[str, str]):
    def replies(loaded, fitted, max_new_tokens, batch_size, seed):
        return [(texts[f.probe.id], "stop_token") for f in fitted]
    return replies


@pytest.mark.parametrize("chat", [True, False])
def test_logprob_scoring_right_and_wrong(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chat: bool) -> None:
    recall, infer = loaded_from(tmp_path, RECALL, INFER)
    monkeypatch.setattr(P, "_replies", fake_replies({"recall": "you live in paris.", "infer": "sushi."}))
    loaded = loaded_copy(chat=chat)
    out = P.score_probes(loaded, [recall, infer])
    rows = {r["id"]: r for r in out["rows"]}
    # The copy model recalls Paris (right) but cannot infer pizza and picks the sushi it can spell
    # from letters it has seen (wrong).
    assert rows["recall"]["logprob_right"] and rows["recall"]["margin"] > 0
    assert not rows["infer"]["logprob_right"] and rows["infer"]["margin"] < 0
    tok, msgs = loaded.tokenizer, list(recall.messages)
    prompt = (chat_template.encode(tok, msgs) if chat else tok.encode(
        "— i live in paris.\n— ok.\n— where do i live?\n— "))
    assert rows["recall"]["right_logprobs"][0] == pytest.approx(copy_logprob(prompt, tok.encode("paris"), tok.vocab_size), abs=1e-5)
    assert rows["recall"]["margin"] == pytest.approx(rows["recall"]["right_logprobs"][0] - rows["recall"]["wrong_logprobs"][0])
    assert [rows["recall"]["keyword_right"], rows["infer"]["keyword_right"]] == [True, False]
    # The control (no fact): "where do i live?" after "Hi." / "Hello." spells neither city, and the
    # fact is what moves the recall probe towards paris.
    control = [{"role": "user", "content": "Hi."}, {"role": "assistant", "content": "Hello."}, msgs[2]]
    control_prompt = (chat_template.encode(tok, control) if chat else tok.encode("— Hi.\n— Hello.\n— where do i live?\n— "))
    control_margin = (copy_logprob(control_prompt, tok.encode("paris"), tok.vocab_size)
                      - copy_logprob(control_prompt, tok.encode("rome"), tok.vocab_size))
    assert rows["recall"]["control_margin"] == pytest.approx(control_margin, abs=1e-5)
    assert rows["recall"]["context_gain"] == pytest.approx(rows["recall"]["margin"] - control_margin, abs=1e-5)
    assert rows["recall"]["context_gain"] > 0
    gains = [rows["recall"]["context_gain"], rows["infer"]["context_gain"]]
    assert out["en"] == pytest.approx({
        "n": 2, "cropped": 0, "logprob_accuracy": 0.5, "keyword_accuracy": 0.5,
        "mean_margin": (rows["recall"]["margin"] + rows["infer"]["margin"]) / 2, "chance": 0.5,
        "control_logprob_accuracy": (float(rows["recall"]["control_margin"] > 0) + float(rows["infer"]["control_margin"] > 0)) / 2,
        "mean_context_gain": sum(gains) / 2, "context_accuracy": sum(g > 0 for g in gains) / 2})
    assert rows["recall"]["distance"] == 1


def test_without_fact_neutralizes_the_fact_and_its_answer(tmp_path: Path) -> None:
    user_fact, *_ = loaded_from(tmp_path, RECALL)
    assert [m["content"] for m in P.without_fact(user_fact).messages] == ["Hi.", "Hello.", "where do i live?"]
    said = probe("said", [("user", "where to go?"), ("assistant", "go to paris."), ("user", "fine."),
                          ("assistant", "good."), ("user", "where did you say?")], ["paris"], ["rome"],
                 ["paris"], ["rome"], fact=1, language="ru")
    (said,) = P.load_probes([write_jsonl(tmp_path / "s.jsonl", [said])])
    assert [m["content"] for m in P.without_fact(said).messages] == [
        "where to go?", "Здравствуйте.", "fine.", "good.", "where did you say?"]


def test_best_of_several_continuations_and_chance(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (p,) = loaded_from(tmp_path, {**INFER, "right": ["pizza", "a lasagna"], "keywords": ["pizz", "lasagn"]})
    monkeypatch.setattr(P, "_replies", fake_replies({"infer": "lasagna"}))
    out = P.score_probes(loaded_copy(), [p])
    row = out["rows"][0]
    assert row["margin"] == pytest.approx(max(row["right_logprobs"]) - max(row["wrong_logprobs"]))
    assert out["en"]["chance"] == pytest.approx(2 / 3) and row["keyword_right"]


def test_a_dropped_fact_is_counted_as_cropped_not_wrong(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    far = probe("far", [("user", "i live in paris."), ("assistant", "ok."),
                        ("user", "tell me a long story about boats and the sea, please, now."),
                        ("assistant", "once upon a time there was a boat on the sea."),
                        ("user", "where do i live?")], ["paris"], ["rome"], ["paris"], ["rome"])
    system = probe("system", [("system", "you live in paris."), ("user", "tell me a long story about boats now."),
                              ("assistant", "once upon a time there was a boat."),
                              ("user", "where do i live?")], ["paris"], ["rome"], ["paris"], ["rome"])
    probes = loaded_from(tmp_path, far, RECALL, system)
    monkeypatch.setattr(P, "_replies", fake_replies({"recall": "paris", "system": "rome"}))
    # 112 tokens: 84 for the prompt, which holds the recall probe and the system probe's last turn
    # beside its system message, but not the far probe's first turn.
    out = P.score_probes(loaded_copy(block=112), probes, max_new_tokens=28)
    rows = {r["id"]: r for r in out["rows"]}
    assert rows["far"]["cropped"] and "the fact (message 0) was dropped" in rows["far"]["cropped_reason"]
    assert "margin" not in rows["far"] and rows["far"]["dropped_messages"] == 4
    assert not rows["system"]["cropped"] and rows["system"]["dropped_messages"] == 2
    assert out["en"]["n"] == 2 and out["en"]["cropped"] == 1 and out["en"]["keyword_accuracy"] == 0.5
    # A question that alone does not fit is cropped too, with its reason.
    out = P.score_probes(loaded_copy(block=24), probes[1:2], max_new_tokens=4)
    assert out["en"]["n"] == 0 and out["en"]["cropped"] == 1
    assert set(out["en"].values()) == {0, 1, None}  # every figure of no probe is None
    assert "does not fit" in out["rows"][0]["cropped_reason"]


@pytest.mark.parametrize("chat", [True, False])
def test_real_engine_on_a_tiny_checkpoint(tmp_path: Path, chat: bool) -> None:
    tok = write_tokenizer(tmp_path / "tokenizer")
    ckpt = write_chat_checkpoint(tmp_path / "m.ckpt", tok, tmp_path / "tokenizer", chat=chat)
    loaded = load_for_generation(ckpt)
    probes = loaded_from(tmp_path, RECALL, INFER)
    first = P.score_probes(loaded, probes, max_new_tokens=8, batch_size=1)
    again = P.score_probes(loaded, probes, max_new_tokens=8, batch_size=2)
    assert [r["reply"] for r in first["rows"]] == [r["reply"] for r in again["rows"]]  # greedy
    for r, s in zip(first["rows"], again["rows"], strict=True):
        assert r["right_logprobs"] == pytest.approx(s["right_logprobs"], abs=1e-5)
        assert r["finish_reason"] in {"stop_token", "stop_string", "max_tokens", "context"}
    assert first["en"]["n"] == 2 and 0.0 <= first["en"]["logprob_accuracy"] <= 1.0
    assert loaded.model.training is False


def test_cli_prints_accuracy_and_failures(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    tok = write_tokenizer(tmp_path / "tokenizer")
    ckpt = write_chat_checkpoint(tmp_path / "m.ckpt", tok, tmp_path / "tokenizer")
    path = write_jsonl(tmp_path / "p.jsonl", [RECALL, INFER])
    assert P.main([str(ckpt), "--probes", str(path), "--max-new-tokens", "4", "--json", str(tmp_path / "o.json")]) == 0
    shown = capsys.readouterr().out
    assert shown.startswith("en: 2 probes scored, 0 cropped; log-prob accuracy ")
    assert json.loads((tmp_path / "o.json").read_text())["en"]["n"] == 2
    assert P.main([str(ckpt), "--probes", str(write_jsonl(tmp_path / "bad.jsonl", ["{"]))]) == 1
    assert capsys.readouterr().err.startswith(f"error: probes: {tmp_path / 'bad.jsonl'}:1: not valid JSON")
