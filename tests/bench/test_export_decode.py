"""The export decode benchmark runs end to end on a small checkpoint and finds full agreement."""

from __future__ import annotations

import pytest

from src.bench.export_decode import agreeing_prefix
from src.bench.export_decode import main as bench_main
from src.tokenizers import load_tokenizer
from tests.export_fixtures import train_small_bpe, write_checkpoint

pytest.importorskip("transformers")
pytest.importorskip("gguf")


def test_agreeing_prefix():
    assert agreeing_prefix([1, 2, 3], [1, 2, 4]) == 2
    assert agreeing_prefix([], [1]) == 0
    assert agreeing_prefix([5, 6], [5, 6]) == 2


@pytest.mark.slow  # ~20 s on 2 cores: trains a tokenizer, exports twice, decodes in every runtime
def test_benchmark_prints_every_runtime(tmp_path, capsys):
    tok_dir = train_small_bpe(tmp_path / "tokenizer")
    ckpt, _ = write_checkpoint(tmp_path, tok_dir, load_tokenizer(tok_dir).vocab_size)
    bench_main(["--model", str(ckpt), "--new-tokens", "6", "--repeats", "1"])
    out = capsys.readouterr().out
    rows = {line.split("  ")[0]: line for line in out.splitlines()}
    # our engine and transformers decode the same fp32 weights: every greedy token agrees
    assert "6/6" in rows["ours (PyTorch fp32)"] and "6/6" in rows["transformers fp32"]
    assert "llama.cpp" in out
