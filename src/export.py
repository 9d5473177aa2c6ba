"""Export a model for inference, here or in other runtimes.

    python -m src.export CHECKPOINT OUT [--format native|hf|gguf] [--dtype ...]

native (default): safetensors weights, config.json and the tokenizer; loads with no Lightning and
    no pickle (src/generation/loading.py documents the layout). --dtype fp32|fp16|bf16.
hf:   a transformers directory (GPT2LMHeadModel + PreTrainedTokenizerFast with the chat template);
    --dtype fp32|fp16|bf16. GPT-2 architecture only (src/exporting/gpt2.py).
gguf: one GGUF file for llama.cpp (arch gpt2, SentencePiece "llama" vocabulary); --dtype
    fp16 (default) | q8_0 | fp32. GPT-2 architecture and the BPE tokenizer only.

CHECKPOINT is a Lightning checkpoint or a native export directory (hf and gguf). OUT is written
beside its final place and swapped in when complete, so a failed export leaves the old one intact.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

from src.atomic_io import atomic_path, replace_directory
from src.exporting.gpt2 import ExportError
from src.generation.loading import (
    CONFIG_FILE,
    EXPORT_FORMAT,
    EXPORT_VERSION,
    TOKENIZER_DIR,
    WEIGHTS_FILE,
    file_sha256,
    load_checkpoint,
    load_for_generation,
    storable_state_dict,
)
from src.generation.precision import DTYPES

FORMATS = ("native", "hf", "gguf")
# The dtypes each format writes; the first is the default.
FORMAT_DTYPES: dict[str, tuple[str, ...]] = {
    "native": ("fp32", "fp16", "bf16"),
    "hf": ("fp32", "fp16", "bf16"),
    "gguf": ("fp16", "q8_0", "fp32"),
}


def export(checkpoint: Path, out_dir: Path, dtype: str = "fp32") -> Path:
    """Write the export of `checkpoint` to `out_dir` (replacing it); returns out_dir."""
    from safetensors.torch import save_file

    if dtype not in DTYPES:
        raise ValueError(f"--dtype: unknown value {dtype!r}; expected one of {list(DTYPES)}")
    loaded = load_checkpoint(checkpoint, need_tokenizer=True)
    model = loaded.model.to(DTYPES[dtype])
    out_dir = out_dir.resolve()
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        save_file(storable_state_dict(model), str(staging / WEIGHTS_FILE), metadata={"format": "pt"})
        loaded.tokenizer.save(staging / TOKENIZER_DIR)
        config = {
            "format": EXPORT_FORMAT,
            "format_version": EXPORT_VERSION,
            "model": model.config_dict(),
            "dtype": dtype,
            "chat": loaded.chat,
            "tokenizer": TOKENIZER_DIR,
            # Checked on every load against the copied tokenizer (loading.verify_tokenizer).
            "tokenizer_sha256": loaded.tokenizer.sha256,
            # The training text's normalization, applied to user input (null: the defaults).
            "normalize": loaded.normalize,
            "weights": WEIGHTS_FILE,
            "weights_sha256": file_sha256(staging / WEIGHTS_FILE),
            "num_params": model.num_params(),
            "source": str(checkpoint),
        }
        (staging / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
        # safetensors makes a private file; the export is an ordinary, shareable folder (and
        # replace_directory opens up mkdtemp's folder).
        os.chmod(staging / WEIGHTS_FILE, 0o644)
        replace_directory(staging, out_dir)  # every file fsync'ed, then swapped in whole
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out_dir


def export_hf(source: Path, out_dir: Path, dtype: str = "fp32") -> Path:
    """Write a transformers model directory for `source` (checkpoint or native export) to
    `out_dir` (replacing it); returns out_dir."""
    from src.exporting.gpt2 import require_gpt2
    from src.exporting.hf import write_hf

    _check_dtype("hf", dtype)
    _require_packages("hf", "transformers", "tokenizers")
    loaded = load_for_generation(source, need_tokenizer=True)
    require_gpt2(loaded.model.cfg, "hf")  # before any file is written
    out_dir = out_dir.resolve()
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        write_hf(loaded, staging, dtype)
        replace_directory(staging, out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out_dir


def export_gguf(source: Path, out_file: Path, dtype: str = "fp16") -> Path:
    """Write a GGUF file for `source` (checkpoint or native export) to `out_file`; returns it."""
    from src.exporting.gguf_file import write_gguf
    from src.exporting.gpt2 import require_gpt2

    _check_dtype("gguf", dtype)
    _require_packages("gguf", "gguf")
    loaded = load_for_generation(source, need_tokenizer=True)
    require_gpt2(loaded.model.cfg, "gguf")
    out_file = out_file.resolve()
    if out_file.is_dir():
        raise ExportError(f"{out_file}: is a directory; --format gguf writes one file (e.g. model.gguf)")
    with atomic_path(out_file) as tmp:
        write_gguf(loaded, tmp, dtype, name=out_file.stem)
        os.chmod(tmp, 0o644)
    return out_file


def _require_packages(fmt: str, *names: str) -> None:
    import importlib.util

    missing = [n for n in names if importlib.util.find_spec(n) is None]
    if missing:
        raise ExportError(f"--format {fmt} needs {', '.join(missing)}: pip install -e '.[export]'")


def _check_dtype(fmt: str, dtype: str) -> None:
    if dtype not in FORMAT_DTYPES[fmt]:
        raise ExportError(f"--dtype: {dtype!r} is not written by --format {fmt}; "
                        f"expected one of {list(FORMAT_DTYPES[fmt])}")


def main(argv: list[str] | None = None) -> None:
    from src.errors import InputError

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint", type=Path,
                    help="a Lightning .ckpt written by a training stage (hf, gguf: or a native export dir)")
    ap.add_argument("out", type=Path, help="the export directory (native, hf) or file (gguf)")
    ap.add_argument("--format", default="native", choices=FORMATS)
    ap.add_argument("--dtype", default=None,
                    help="native, hf: fp32 (default) | fp16 | bf16; gguf: fp16 (default) | q8_0 | fp32")
    args = ap.parse_args(argv)
    dtype = args.dtype or FORMAT_DTYPES[args.format][0]
    try:
        if args.format == "native":
            _check_dtype("native", dtype)
            out = export(args.checkpoint, args.out, dtype)
        elif args.format == "hf":
            out = export_hf(args.checkpoint, args.out, dtype)
        else:
            out = export_gguf(args.checkpoint, args.out, dtype)
    except InputError as exc:
        sys.exit(f"export: {exc}")
    files = [out] if out.is_file() else [f for f in out.rglob("*") if f.is_file()]
    size = sum(f.stat().st_size for f in files)
    print(f"exported {args.checkpoint} -> {out} ({args.format}, {dtype}, {size / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
