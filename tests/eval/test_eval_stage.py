"""The eval stage end to end on tiny checkpoints: outputs, absent models, determinism."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from src.config import compose, load_config
from src.eval.stage import prompt_ids
from src.generation.loading import load_for_generation
from src.stage import execute_stage
from tests.training.kto_fixtures import write_chat_checkpoint
from tests.training.sft_fixtures import (
    conv,
    sample_conversations,
    write_dialogues,
    write_pretrained,
    write_tokenizer,
)

PROMPTS = [
    {"id": "en-hi", "language": "en", "messages": [{"role": "user", "content": "hi, how are you?"}]},
    {"id": "en-sea", "language": "en", "messages": [{"role": "user", "content": "do you like the sea?"}]},
    {"id": "en-two", "language": "en", "messages": [{"role": "user", "content": "a cat?"},
                                                      {"role": "assistant", "content": "a dog."},
                                                      {"role": "user", "content": "and the sun?"}]},
]


@pytest.fixture
def pipeline_dir(tmp_path):
    """What the stages before eval leave behind: a tokenizer, token files, corpora, dialogues, a
    pretrained and an SFT checkpoint (no KTO), and their reports."""
    tok = write_tokenizer(tmp_path / "tokenizer")
    write_pretrained(tmp_path / "pretrain" / "best.ckpt", tok, tmp_path / "tokenizer")
    (tmp_path / "pretrain" / "val_curve.json").write_text(json.dumps([{"step": 5, "val_loss": 3.2},
                                                                      {"step": 10, "val_loss": 3.0}]))
    (tmp_path / "pretrain" / "metrics.json").write_text(json.dumps({"params": 1, "steps": 10}))
    write_chat_checkpoint(tmp_path / "sft" / "last.ckpt", tok, tmp_path / "tokenizer")  # no best.ckpt: last
    lit = [{"doc_id": f"b{i}", "text": f"the cat sat on the mat, page {'abc'[i % 3]}.\n" * 3} for i in range(10)]
    pq.write_table(pa.Table.from_pylist(lit), tmp_path / "librus.parquet")
    subs = [{"file_id": f"f{f}", "line_index": k, "text": f"line {k}, file {'xyz'[f % 3]}.", "language": "en"}
            for f in range(6) for k in range(2)]
    pq.write_table(pa.Table.from_pylist(subs), tmp_path / "subtitles.parquet")
    write_dialogues(tmp_path / "dialogues", sample_conversations(4, 0), sample_conversations(3, 1) + [conv("x?")])
    tokens = tmp_path / "tokens"
    tokens.mkdir()
    train = np.asarray(tok.encode("the cat sat on the mat. hi? sun sea. " * 4), dtype=np.uint16)
    train.tofile(tokens / "train.bin")
    train[:8].tofile(tokens / "val.bin")
    (tokens / "meta.json").write_text(json.dumps({
        "vocab_size": tok.vocab_size, "dtype": "uint16", "eot_id": tok.eot_id,
        "splits": {"train": {"file": "train.bin", "n_tokens": len(train), "n_bytes": 1, "n_docs": 1},
                   "val": {"file": "val.bin", "n_tokens": 8, "n_bytes": 1, "n_docs": 1}},
        "tokenizer": {"dir": str(tmp_path / "tokenizer"), "sha256": tok.sha256}}))
    (tmp_path / "prompts.jsonl").write_text("".join(json.dumps(p) + "\n" for p in PROMPTS))
    return tmp_path


def eval_config(root, *overrides):
    return load_config(compose([
        "tracking.enabled=false", f"eval.out_dir={root / 'eval'}",
        f"eval.models.pretrain={root / 'pretrain'}", f"eval.models.sft={root / 'sft'}",
        f"eval.models.kto={root / 'kto'}", f"eval.reports_dir={root / 'reports'}",
        f"eval.tokenizer_report={root / 'tokenizer' / 'report.json'}",
        f"eval.lm.literature_path={root / 'librus.parquet'}", f"eval.lm.subtitles_path={root / 'subtitles.parquet'}",
        f"eval.lm.dialogues_path={root / 'dialogues' / 'dialogues.parquet'}", f"eval.lm.tokens_dir={root / 'tokens'}",
        "eval.lm.val_fraction=0.4", f"eval.generation.prompts={root / 'prompts.jsonl'}",
        "eval.generation.max_new_tokens=8", "eval.probes.enabled=false", "eval.reranker.enabled=false",
        "eval.latency.enabled=false", *overrides]))


def read_outputs(out):
    return {name: (out / name).read_bytes() for name in ("results.json", "metrics.json", "samples.jsonl")}


def test_the_stage_evaluates_what_is_there_and_lists_what_is_absent(pipeline_dir):
    summary = execute_stage("eval", eval_config(pipeline_dir))
    out = pipeline_dir / "eval"
    results = json.loads((out / "results.json").read_text())
    assert results["models"]["pretrain"]["present"] and results["models"]["sft"]["present"]
    assert results["models"]["sft"]["path"].endswith("last.ckpt")
    assert not results["models"]["kto"]["present"]
    assert "best.ckpt not found" in results["models"]["kto"]["reason"]
    assert any(line.startswith("kto: ") for line in results["absent"])
    assert any(line.startswith("probes: switched off") for line in results["absent"])
    assert any("skipped kto" in n for n in summary.notes)
    for model in ("pretrain", "sft"):
        for corpus in ("literature", "subtitles", "dialogues"):
            figures = results["lm"][model][corpus]
            assert figures["tokens"] > 0 and figures["bytes"] > 0 and 0 < figures["bpb"] < 20
        assert results["generation"][model]["n"] == len(PROMPTS)
        assert len(results["series"]["reply_lengths"][model]) == len(PROMPTS)
    assert set(results["unigram"]) == {"literature", "subtitles", "dialogues"}
    assert results["series"]["loss_curves"] == {"pretrain": {"val": [[5, 3.2], [10, 3.0]]}}
    assert [s["id"] for s in results["samples"]] == [p["id"] for p in PROMPTS]
    assert set(results["samples"][0]["replies"]) == {"pretrain", "sft"}

    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["models_present"] == 2 and "kto" in metrics["absent"] and metrics["absent_count"] >= 4
    assert set(metrics["lm"]) == {"pretrain", "sft"} and "bpb" in metrics["unigram"]["literature"]
    rows = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert len(rows) == 2 * len(PROMPTS) and {r["model"] for r in rows} == {"pretrain", "sft"}
    assert rows[2]["prompt"] == "and the sun?" and isinstance(rows[0]["flags"], list)
    plots = sorted(p.name for p in (out / "plots").iterdir())
    assert plots == ["loss_pretrain.csv", "reply_lengths.csv"]
    assert (out / "plots" / "reply_lengths.csv").read_text().splitlines()[0] == "length,pretrain,sft,kto"
    assert (out / "report.md").is_file() and (out / "report.html").is_file()
    assert "kto" in (out / "report.md").read_text()
    assert summary.wrote["replies"] == 2 * len(PROMPTS)


def test_two_runs_write_the_same_bytes(pipeline_dir):
    cfg = eval_config(pipeline_dir, "eval.report=false")
    execute_stage("eval", cfg)
    first = read_outputs(pipeline_dir / "eval")
    execute_stage("eval", cfg)
    assert read_outputs(pipeline_dir / "eval") == first


def test_no_model_at_all_is_no_crash(pipeline_dir, tmp_path):
    cfg = eval_config(pipeline_dir, f"eval.models.pretrain={tmp_path / 'gone'}", "eval.models.sft=''",
                      "eval.lm.enabled=false", "eval.generation.enabled=false", "eval.report=false")
    summary = execute_stage("eval", cfg)
    results = json.loads((pipeline_dir / "eval" / "results.json").read_text())
    assert not any(m["present"] for m in results["models"].values())
    assert results["models"]["sft"]["reason"].startswith("not configured")
    assert {line.split(":")[0] for line in results["absent"]} >= {"pretrain", "sft", "kto", "lm", "generation"}
    assert summary.dropped["absent_parts"] == len(results["absent"])


def test_an_unreadable_checkpoint_is_absent_with_the_loader_s_reason(pipeline_dir):
    (pipeline_dir / "kto").mkdir()
    (pipeline_dir / "kto" / "best.ckpt").write_bytes(b"not a checkpoint")
    cfg = eval_config(pipeline_dir, "eval.lm.enabled=false", "eval.generation.enabled=false", "eval.report=false")
    execute_stage("eval", cfg)
    results = json.loads((pipeline_dir / "eval" / "results.json").read_text())
    assert results["models"]["kto"]["reason"].startswith("not loadable:")
    assert "not a readable checkpoint" in results["models"]["kto"]["reason"]


def test_prompts_chat_models_read_the_template_others_the_plain_last_message(pipeline_dir):
    pretrained = load_for_generation(pipeline_dir / "pretrain" / "best.ckpt")
    chat = load_for_generation(pipeline_dir / "sft" / "last.ckpt")
    tok = chat.tokenizer
    ids, answered = prompt_ids(pretrained, PROMPTS[2]["messages"], 8, 0.25)
    assert answered == "and the sun?" and ids == [tok.eot_id, *tok.encode("and the sun?")]
    ids, _ = prompt_ids(chat, PROMPTS[2]["messages"], 8, 0.25)
    assert tok.decode(ids).count("a dog.") == 1 and ids[-2:] == tok.encode("<|assistant|>\n")
    long = [{"role": "user", "content": "sea " * 40}]
    ids, _ = prompt_ids(pretrained, long, 8, 0.25)
    assert len(ids) == pretrained.model.block_size - 8  # room left for the reply


def test_the_eval_run_is_tagged_with_every_evaluated_stage_run(monkeypatch) -> None:
    import sys
    import types

    from src.eval.stage import log_evaluated_runs
    from src.stage import StageRun

    asked: list[list[str]] = []
    tags: dict[str, str] = {}
    monkeypatch.setattr("src.tracking.producing_runs",
                        lambda stages, cfg=None: asked.append(list(stages)) or {s: f"run-{s}" if s != "kto" else None
                                                                                for s in stages})
    fake = types.SimpleNamespace(set_tags=tags.update, log_metrics=lambda *a, **k: None, active_run=lambda: None)
    monkeypatch.setitem(sys.modules, "mlflow", fake)
    run = StageRun("eval", compose([]), tracking_active=True)
    results = {"models": {"pretrain": {"present": True}, "sft": {"present": True}, "kto": {"present": True},
                          "extra": {"present": False}},
               "reranker": {"roc_auc": 0.6}, "absent": []}
    log_evaluated_runs(results, run)
    assert asked == [["pretrain", "sft", "kto", "reranker"]]
    assert tags == {"eval.evaluated.pretrain": "run-pretrain", "eval.evaluated.sft": "run-sft",
                    "eval.evaluated.reranker": "run-reranker"}
    assert any("kto" in note for note in run.summary.notes)
