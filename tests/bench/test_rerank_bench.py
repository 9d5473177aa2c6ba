"""The reranker benchmark runs end to end on an exported tiny model."""

from __future__ import annotations

from pathlib import Path

import pytest

from src.bench.rerank import main
from src.generation.reranker import export_own
from tests.models.test_cross_encoder import own_model


def test_bench_scores_every_candidate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = own_model()
    export_own(model, model.tokenizer, tmp_path / "rr")
    main(["--reranker", str(tmp_path / "rr"), "--n", "20", "--tokens", "8", "--batch-size", "8",
          "--repeats", "1", "--device", "cpu"])
    out = capsys.readouterr().out
    assert "20 candidates of ~8 tokens" in out and "score 20 candidates: median" in out
