"""Pipeline facts from stage reports: what exists is read, what is missing or broken is left out."""

from __future__ import annotations

import json

from src.eval.collect import collect


def write(path, data):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(data if isinstance(data, str) else json.dumps(data), encoding="utf-8")


def test_collect_reads_reports_models_and_kto_curves(tmp_path):
    reports, models = tmp_path / "reports", tmp_path / "models"
    write(reports / "clean_subs" / "report.json",
          {"totals": {"files_in": 17, "files_kept": 8, "lines_out": 121}, "dropped": {"language:uk": 1}})
    write(reports / "build_dialogues" / "report.json", {"written": 45, "train": 37, "val": 8})
    write(reports / "markov" / "report.json", "{not json")
    write(reports / "pretrain" / "throughput.json", {"tokens_per_s": 1234.5, "train_seconds": 9.0, "mfu": None})
    write(tmp_path / "tokens" / "report.json", {"read": {"literature_docs": 11}, "dropped": {},
                                               "splits": {"val": {"n_tokens": 30, "n_bytes": 90, "n_docs": 3}}})
    write(tmp_path / "tokenizer.json", {"kind": "bpe", "vocab_size": 1000,
                                        "heldout": {"chars_per_token": 2.1, "docs": 3}})
    write(models / "pretrain" / "metrics.json", {"params": 538240, "steps": 200, "tokens_per_step": 1024,
                                                 "best_val_loss": 4.7, "val_bpb": 1.8})
    write(models / "pretrain" / "val_curve.json", [{"step": 50, "train_loss": 5.5, "val_loss": 5.3},
                                                   {"step": 100, "val_loss": 4.9}])
    write(models / "kto" / "val_curve.json", [{"step": 0, "rewards_margin": 0.0, "collapsed": 0.0, "loop_rate": 0.1},
                                              {"step": 10, "rewards_margin": 0.2, "collapsed": 0.0}])
    notes: list[str] = []
    timings: dict[str, float] = {}
    pipeline, series = collect({"pretrain": models / "pretrain", "sft": None, "kto": models / "kto"},
                               reports, tmp_path / "tokenizer.json", tmp_path / "tokens", notes, timings)

    assert pipeline["data"]["clean_subs"] == {"read": {"files_in": 17}, "wrote": {"files_kept": 8, "lines_out": 121},
                                              "dropped": {"language:uk": 1}}
    assert pipeline["data"]["build_dialogues"]["wrote"] == {"written": 45, "train": 37, "val": 8}
    assert pipeline["data"]["tokenize"]["wrote"] == {"val_n_tokens": 30, "val_n_bytes": 90, "val_n_docs": 3}
    assert "markov" not in pipeline["data"] and "clean_librus" not in pipeline["data"]
    assert any("markov/report.json: unreadable" in n for n in notes)
    assert pipeline["tokenizer"] == {"kind": "bpe", "vocab_size": 1000, "chars_per_token": 2.1, "heldout_docs": 3}
    assert pipeline["training"]["pretrain"] == {"parameters": 538240, "steps": 200, "tokens_per_step": 1024,
                                                "tokens": 204800, "best_val_loss": 4.7, "val_bpb": 1.8,
                                                "seconds": 9.0, "tokens_per_s": 1234.5}
    assert "sft" not in pipeline["training"] and "kto" not in pipeline["training"]
    assert series["loss_curves"] == {"pretrain": {"train": [[50, 5.5]], "val": [[50, 5.3], [100, 4.9]]}}
    # the guard's figures by name; the collapsed flag is no curve
    assert series["kto"] == {"rewards_margin": [[0, 0.0], [10, 0.2]], "loop_rate": [[0, 0.1]]}
    # wall clock goes to the timings and, for the report card's training table, to the model's facts
    assert timings == {"pretrain.tokens_per_s": 1234.5, "pretrain.train_seconds": 9.0}


def test_collect_with_nothing_there_is_empty_not_an_error(tmp_path):
    notes: list[str] = []
    pipeline, series = collect({"pretrain": None}, tmp_path / "r", tmp_path / "t.json", tmp_path / "tok", notes, {})
    assert pipeline == {"data": {}, "tokenizer": {}, "training": {}}
    assert series == {"loss_curves": {}, "kto": {}} and notes == []
