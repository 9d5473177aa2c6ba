from __future__ import annotations

import re

import pytest
import torch

from src.bench.generate import main


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_benchmark_prints_first_token_and_rates_per_format(capsys):
    main(["--preset", "tiny", "--device", "cpu", "--precision", "fp32,int8", "--prompt-len", "8",
          "--new-tokens", "6", "--batch", "3", "--batch-new-tokens", "3", "--repeats", "1"])
    out = capsys.readouterr().out
    assert "tiny:" in out and "parameters" in out
    rows = re.findall(r"(fp32|int8): first token +([\d.]+) ms \| batch 1 +([\d.]+) tok/s \| batch 3 +([\d.]+) tok/s", out)
    assert [r[0] for r in rows] == ["fp32", "int8"]
    assert all(float(v) > 0 for r in rows for v in r[1:])
    assert "vs fp32: rel. logit error" in out.splitlines()[-1]
