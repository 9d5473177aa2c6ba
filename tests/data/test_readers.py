"""Garbage in front of each stage: one `error: STAGE: PATH: ...` line, exit status 1, no traceback."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from src.data.readers import InputFileError, open_memmap, open_parquet, read_json, read_parquet
from src.run import main as run_main

GARBAGE = bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8))
# Parquet's magic at both ends, garbage in between: passes the first check, fails on the footer.
FAKE_PARQUET = b"PAR1" + GARBAGE + b"PAR1"


def _garbage(path: Path, data: bytes = GARBAGE) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _run_fails_naming(capsys: pytest.CaptureFixture, stage: str, path: Path, *overrides: str) -> str:
    status = run_main([stage, "tracking.enabled=false", *overrides])
    err = capsys.readouterr().err
    assert status == 1, err[-2000:]
    assert "Traceback" not in err
    line = next(ln for ln in err.splitlines() if ln.startswith("error: "))
    assert line.startswith(f"error: {stage}: {path}: "), line
    return line


@pytest.mark.parametrize("data", [GARBAGE, FAKE_PARQUET, b""], ids=["random", "fake-magic", "empty"])
def test_parquet_readers_name_the_file(tmp_path: Path, data: bytes) -> None:
    path = _garbage(tmp_path / "x.parquet", data)
    with pytest.raises(InputFileError, match=rf"^{path}: not a readable parquet file"):
        read_parquet(path)
    with pytest.raises(InputFileError, match=rf"^{path}: not a readable parquet file"):
        open_parquet(path)
    with pytest.raises(InputFileError, match=rf"^{tmp_path / 'none.parquet'}: not found; run it"):
        read_parquet(tmp_path / "none.parquet", hint="run it")


def test_json_reader_names_the_file(tmp_path: Path) -> None:
    path = _garbage(tmp_path / "meta.json")
    with pytest.raises(InputFileError, match=rf"^{path}: not a readable JSON file"):
        read_json(path)  # not UTF-8
    path.write_text("{ not json", encoding="utf-8")
    with pytest.raises(InputFileError, match=rf"^{path}: not valid JSON \(line 1\)"):
        read_json(path)
    path.write_text("[1, 2]", encoding="utf-8")
    with pytest.raises(InputFileError, match=rf"^{path}: expected a JSON dict, found list"):
        read_json(path)


def test_memmap_reader_checks_the_item_size(tmp_path: Path) -> None:
    path = _garbage(tmp_path / "train.bin", GARBAGE[:7])
    with pytest.raises(InputFileError, match=rf"^{path}: 7 bytes is not a whole number of uint16"):
        open_memmap(path, np.uint16)
    assert len(open_memmap(_garbage(tmp_path / "empty.bin", b""), np.uint16)) == 0


def test_clean_librus_garbage_manifest(tmp_path: Path, capsys) -> None:
    manifest = _garbage(tmp_path / "raw" / "manifest.parquet")
    _run_fails_naming(capsys, "clean_librus", manifest, f"clean_librus.raw_dir={tmp_path / 'raw'}",
                      f"clean_librus.output={tmp_path / 'out.parquet'}",
                      f"clean_librus.report_dir={tmp_path / 'report'}")


def test_clean_subs_garbage_manifest(tmp_path: Path, capsys) -> None:
    manifest = _garbage(tmp_path / "raw" / "manifest.parquet", FAKE_PARQUET)
    _run_fails_naming(capsys, "clean_subs", manifest, f"clean_subs.input_dir={tmp_path / 'raw'}",
                      f"clean_subs.output={tmp_path / 'out.parquet'}",
                      f"clean_subs.report_dir={tmp_path / 'report'}")


def test_train_tokenizer_garbage_corpus(tmp_path: Path, capsys) -> None:
    corpus = _garbage(tmp_path / "librus.parquet")
    _run_fails_naming(capsys, "train_tokenizer", corpus, "tokenizer.corpora=[literature]",
                      f"tokenizer.literature_path={corpus}", f"tokenizer.out_dir={tmp_path / 'tok'}")


def _char_tokenizer(directory: Path) -> Path:
    from src.tokenizers.char import train_char

    train_char(Counter("абвгд "), vocab_size=0, min_count=1, normalize_cfg=None).save(directory)
    return directory


def test_tokenize_garbage_tokenizer_and_corpus(tmp_path: Path, capsys) -> None:
    tok = _char_tokenizer(tmp_path / "tok")
    meta = _garbage(tok / "tokenizer.json")
    common = [f"tokenize.out_dir={tmp_path / 'tokens'}", "tokenize.corpora=[literature]",
              "tokenize.workers=0"]
    _run_fails_naming(capsys, "tokenize", meta, f"tokenize.tokenizer_dir={tok}", *common)

    tok = _char_tokenizer(tmp_path / "tok2")
    corpus = _garbage(tmp_path / "librus.parquet", FAKE_PARQUET)
    _run_fails_naming(capsys, "tokenize", corpus, f"tokenize.tokenizer_dir={tok}",
                      f"tokenizer.literature_path={corpus}", *common)


def test_a_corrupt_page_inside_a_valid_parquet_names_the_file(tmp_path: Path) -> None:
    from src.tokenizers.corpus import CorpusSource, _literature

    path = tmp_path / "librus.parquet"
    texts = [f"text {i} " * 50 for i in range(200)]
    pq.write_table(pa.table({"doc_id": [str(i) for i in range(200)], "text": texts}), path,
                   compression="none", use_dictionary=False)
    data = bytearray(path.read_bytes())
    # Overwrite the middle of the data pages, leaving the footer (schema, offsets) intact.
    data[200:len(data) // 2] = GARBAGE[: len(data) // 2 - 200].ljust(len(data) // 2 - 200, b"\xff")
    path.write_bytes(bytes(data))
    source = CorpusSource("literature", path, "tokenizer.literature_path")
    with pytest.raises(InputFileError, match=rf"^{path}: "):
        list(_literature(source))


def _tokens(tmp_path: Path) -> Path:
    from tests.training.conftest import write_tokens

    return write_tokens(tmp_path / "tokens", n_train=600, n_val=300)


def test_pretrain_garbage_meta(tmp_path: Path, capsys) -> None:
    tokens = _tokens(tmp_path)
    meta = _garbage(tokens / "meta.json")
    _run_fails_naming(capsys, "pretrain", meta, f"pretrain.data_dir={tokens}",
                      f"pretrain.ckpt_dir={tmp_path / 'ckpt'}", f"pretrain.report_dir={tmp_path / 'r'}")


def test_pretrain_garbage_token_file(tmp_path: Path, capsys) -> None:
    tokens = _tokens(tmp_path)
    size = (tokens / "train.bin").stat().st_size
    train = _garbage(tokens / "train.bin", (GARBAGE * 2)[:size])  # the right length, random ids
    line = _run_fails_naming(capsys, "pretrain", train, f"pretrain.data_dir={tokens}",
                             f"pretrain.ckpt_dir={tmp_path / 'ckpt'}",
                             f"pretrain.report_dir={tmp_path / 'r'}")
    assert "outside the vocabulary" in line
    meta = json.loads((tokens / "meta.json").read_text())
    meta["splits"]["val"] = "not a mapping"
    (tokens / "meta.json").write_text(json.dumps(meta))
    _run_fails_naming(capsys, "pretrain", tokens / "meta.json", f"pretrain.data_dir={tokens}",
                      f"pretrain.ckpt_dir={tmp_path / 'ckpt'}", f"pretrain.report_dir={tmp_path / 'r'}")
