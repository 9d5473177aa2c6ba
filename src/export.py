"""Export a Lightning checkpoint for inference: safetensors weights, config.json, the tokenizer.

    python -m src.export CHECKPOINT OUT_DIR [--dtype fp32|fp16|bf16]

The result loads with no Lightning and no pickle (src/generation/loading.py documents the layout).
OUT_DIR is written in a staging directory beside it and swapped in when complete.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

from src.atomic_io import replace_directory
from src.generation.loading import (
    CONFIG_FILE,
    EXPORT_FORMAT,
    EXPORT_VERSION,
    TOKENIZER_DIR,
    WEIGHTS_FILE,
    LoadError,
    file_sha256,
    load_checkpoint,
    storable_state_dict,
)
from src.generation.precision import DTYPES


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


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint", type=Path, help="a Lightning .ckpt written by the pretrain stage")
    ap.add_argument("out_dir", type=Path)
    ap.add_argument("--dtype", default="fp32", choices=sorted(DTYPES))
    args = ap.parse_args(argv)
    try:
        out = export(args.checkpoint, args.out_dir, args.dtype)
    except LoadError as exc:
        sys.exit(f"export: {exc}")
    size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    print(f"exported {args.checkpoint} -> {out} ({args.dtype}, {size / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
