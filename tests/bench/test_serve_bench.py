from __future__ import annotations

import json

import pytest

from src.bench.serve import main as bench_main
from src.bench.serve import percentile
from tests.serve.conftest import write_checkpoint

pytest.importorskip("openai")


def test_load_test_serves_every_request(tmp_path, capsys):
    model = write_checkpoint(tmp_path, chat=True)
    out = tmp_path / "cells.json"
    cells = bench_main([str(model), "--clients", "1,3", "--requests", "2", "--max-tokens", "4",
                        "--batching", "on", "--json", str(out)])
    assert [(c.clients, c.requests, c.errors) for c in cells] == [(1, 2, 0), (3, 6, 0)]
    assert all(c.requests_per_s > 0 and c.ttft_p50_ms > 0 for c in cells)
    assert json.loads(out.read_text())[1]["clients"] == 3
    assert "| on | 3 | 6 | 0 |" in capsys.readouterr().out


def test_percentile():
    assert percentile([3, 1, 2, 4, 5], 0.5) == 3 and percentile([1, 2], 0.95) == 2
    assert percentile([], 0.5) != percentile([], 0.5)  # NaN


def test_bad_arguments_are_one_line(tmp_path):
    with pytest.raises(SystemExit, match="--batching"):
        bench_main([str(tmp_path), "--batching", "sometimes"])
