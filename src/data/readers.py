"""Checked readers for the files stages take as input: parquet, JSON and token memmaps.

Every failure to read an input (missing, truncated, random bytes, not the expected shape) becomes an
`InputFileError` whose message starts with the file's path, so the entry points print one line
(`error: STAGE: PATH: ...`) instead of a pyarrow/json traceback that never names the file. Stage
code reads its inputs through these functions only; a test feeds random bytes to each stage.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from src.errors import InputError


class InputFileError(InputError, ValueError):
    """An input file that cannot be read as what it should be; the message names the file."""


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


@contextmanager
def reading(path: Path | str, what: str, hint: str = "") -> Iterator[None]:
    """Turn any error raised while reading `path` inside the block into one `InputFileError` naming
    the file. Only reading code belongs in the block: every OSError/Arrow error becomes an input error."""
    try:
        yield
    except InputError:
        raise
    except FileNotFoundError:
        raise InputFileError(f"{path}: not found{'; ' + hint if hint else ''}") from None
    except (pa.ArrowException, OSError, ValueError, EOFError) as exc:
        # ArrowInvalid is a ValueError; a truncated file can surface as OSError or EOFError.
        raise InputFileError(f"{path}: not a readable {what} ({_reason(exc)})"
                             f"{'; ' + hint if hint else ''}") from None


def open_parquet(path: Path | str, hint: str = "") -> pq.ParquetFile:
    """A parquet file opened for streaming; its footer (schema, row groups) is read and checked."""
    with reading(path, "parquet file", hint):
        if not Path(path).is_file():
            raise FileNotFoundError(path)
        return pq.ParquetFile(path)


def read_parquet(path: Path | str, columns: Sequence[str] | None = None, hint: str = "") -> pa.Table:
    """The whole table (or `columns`) of a parquet file."""
    with reading(path, "parquet file", hint):
        if not Path(path).is_file():
            raise FileNotFoundError(path)
        return pq.read_table(path, columns=list(columns) if columns is not None else None)


def iter_parquet_batches(pf: pq.ParquetFile, path: Path | str, columns: Sequence[str],
                         batch_size: int) -> Iterator[pa.RecordBatch]:
    """Record batches of `pf` (opened from `path`); a corrupt page met on the way names the file."""
    with reading(path, "parquet file"):
        yield from pf.iter_batches(batch_size=batch_size, columns=list(columns))


def read_json(path: Path | str, hint: str = "", expect: type = dict) -> Any:
    """A UTF-8 JSON document whose top level is `expect` (an object by default)."""
    path = Path(path)
    with reading(path, "JSON file", hint):
        text = path.read_text(encoding="utf-8")
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputFileError(f"{path}: not valid JSON (line {exc.lineno}): {exc.msg}"
                                 f"{'; ' + hint if hint else ''}") from None
    if not isinstance(data, expect):
        raise InputFileError(f"{path}: expected a JSON {expect.__name__}, found {type(data).__name__}")
    return data


def open_memmap(path: Path | str, dtype: np.dtype | type, hint: str = "") -> np.ndarray:
    """A read-only memmap of a flat token file; its size must be a whole number of `dtype` items."""
    itemsize = np.dtype(dtype).itemsize
    with reading(path, "token file", hint):
        size = Path(path).stat().st_size
        if size % itemsize:
            raise InputFileError(f"{path}: {size} bytes is not a whole number of "
                                 f"{np.dtype(dtype).name} tokens")
        if size == 0:
            return np.zeros(0, dtype=dtype)  # numpy cannot map an empty file
        return np.memmap(path, dtype=dtype, mode="r")
