"""Load a model for generation from a Lightning checkpoint or an export directory.

Export directory (written by `python -m src.export`, read with no Lightning and no pickle):

    config.json          {"format": "homunculus-gpt", "format_version": 1, "model": {ModelConfig},
                          "dtype": "fp32|fp16|bf16", "chat": bool, "tokenizer": "tokenizer",
                          "tokenizer_sha256": "...", "normalize": {normalize section} | null,
                          "weights": "model.safetensors", "weights_sha256": "...", "source": "..."}
    model.safetensors    the GPT state dict (a tied output head is stored once, as the embedding)
    tokenizer/           the tokenizer directory (Tokenizer.save)

Lightning checkpoint: a dict with "state_dict" (GPT keys prefixed "model.") and "hyper_parameters"
{"model": GPT.config_dict(), "tokenizer_dir": str, "tokenizer_sha256": str, "normalize": dict,
optionally "chat": bool}; read with torch.load(weights_only=True). Every failure raises LoadError
naming the file.

The tokenizer is found by path, and that path ("data/tokenizer") is the same for every tokenizer
preset, so every load checks the tokenizer's sha256 against the one the weights were trained with
(`verify_tokenizer`): after a switch between char and BPE an old checkpoint is refused instead of
decoding with the wrong vocabulary. Checkpoints from before the hash was recorded load with a
warning.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from src.errors import InputError
from src.models.gpt import GPT
from src.paths import resolve

EXPORT_FORMAT = "homunculus-gpt"
EXPORT_VERSION = 1
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
TOKENIZER_DIR = "tokenizer"
CHECKPOINT_PREFIX = "model."
TIED_HEAD_KEY = "lm_head.weight"


class LoadError(InputError, ValueError):
    """A checkpoint or export that cannot be loaded; the message names the file."""


@dataclass
class LoadedModel:
    model: GPT
    tokenizer: Any | None
    # True when the model was fine-tuned on the chat template (the SFT stage marks it).
    chat: bool
    source: Path
    # sha256 of the tokenizer the weights were trained with ("" when the file predates the record).
    tokenizer_sha256: str = ""
    # The `normalize` section the training text went through (None: not recorded; use the
    # defaults). User input goes through it too (chat_template.normalize_user_text).
    normalize: dict[str, Any] | None = None


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def storable_state_dict(model: GPT) -> dict[str, Tensor]:
    """The state dict without the tied head's duplicate (safetensors refuses shared tensors)."""
    state = model.state_dict()
    if model.cfg["tie_embeddings"]:
        state.pop(TIED_HEAD_KEY)
    return {k: v.contiguous() for k, v in state.items()}


def build_model(config: dict[str, Any], state: dict[str, Tensor], source: Path) -> GPT:
    """A GPT of `config` holding `state`; missing, unexpected or misshapen tensors -> LoadError."""
    try:
        model = GPT.from_config_dict(config)
    except ValueError as exc:
        raise LoadError(f"{source}: bad model config: {exc}") from None
    expected = storable_state_dict(model)
    state = dict(state)
    if model.cfg["tie_embeddings"]:
        state.pop(TIED_HEAD_KEY, None)  # checkpoints hold the tied head under both names
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    misshapen = sorted(f"{k} {tuple(state[k].shape)} != {tuple(expected[k].shape)}"
                       for k in set(expected) & set(state) if state[k].shape != expected[k].shape)
    if missing or unexpected or misshapen:
        raise LoadError(f"{source}: weights do not match the model config "
                        f"(missing {missing[:5]}, unexpected {unexpected[:5]}, shape {misshapen[:5]})")
    model.load_state_dict(state, strict=False)
    return model.eval()


def _load_tokenizer(path: Path, required: bool) -> Any | None:
    from src.tokenizers import TokenizerError, load_tokenizer

    if not path.is_dir():
        if required:
            raise LoadError(f"{path}: tokenizer directory not found")
        return None
    try:
        return load_tokenizer(path)
    except TokenizerError as exc:
        raise LoadError(str(exc)) from None


def recorded_tokenizer_sha256(hparams: Mapping[str, Any]) -> str:
    """The tokenizer sha256 a checkpoint's hyper_parameters record: the top-level key, or (pretrain
    checkpoints written before it existed) the run identity's data section; "" when neither."""
    identity = hparams.get("identity")
    data = (identity.get("data") if isinstance(identity, Mapping) else None) or {}
    return str(hparams.get("tokenizer_sha256") or data.get("tokenizer_sha256") or "")


def verify_tokenizer(expected_sha256: str | None, tokenizer_dir: str | Path, source: str | Path) -> bool:
    """Check that `tokenizer_dir` holds the tokenizer `source` (a checkpoint or export) was trained
    with. A different sha256 -> LoadError naming both hashes and both paths. No recorded hash (an
    older file) -> a warning on stderr, and False; True when the hashes match. The directory must be
    a readable tokenizer (else LoadError naming it)."""
    from src.tokenizers import TokenizerError
    from src.tokenizers.base import read_meta

    tokenizer_dir = resolve(tokenizer_dir)
    try:
        found = str(read_meta(tokenizer_dir)["sha256"])
    except TokenizerError as exc:
        raise LoadError(str(exc)) from None
    if not expected_sha256:
        print(f"warning: {source} records no tokenizer sha256, so {tokenizer_dir} (sha256 {found[:12]}) "
              "cannot be checked; if it was retrained since, the model decodes with the wrong "
              "vocabulary", file=sys.stderr)
        return False
    if found != expected_sha256:
        raise LoadError(f"{source} was trained with the tokenizer of sha256 {expected_sha256}, but "
                        f"{tokenizer_dir} holds sha256 {found} (retrained, or another tokenizer "
                        "preset since); retrain or re-export the model, or restore that tokenizer")
    return True


def recorded_normalize(record: Mapping[str, Any], tokenizer: Any | None) -> dict[str, Any] | None:
    """The normalize settings of the training text: the tokenizer's own (trained with
    normalize_on_encode), else the checkpoint's or export's record, else None (defaults)."""
    from_tokenizer = getattr(tokenizer, "normalize_cfg", None)
    if from_tokenizer:
        return dict(from_tokenizer)
    recorded = record.get("normalize")
    return dict(recorded) if isinstance(recorded, Mapping) else None


def load_checkpoint(path: Path, need_tokenizer: bool = True) -> LoadedModel:
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types (zip, unpickling, EOF) for a bad file
        raise LoadError(f"{path}: not a readable checkpoint ({type(exc).__name__}: {exc})") from None
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt or "hyper_parameters" not in ckpt:
        raise LoadError(f"{path}: not a Lightning checkpoint (needs 'state_dict' and 'hyper_parameters')")
    hparams = ckpt["hyper_parameters"]
    if "model" not in hparams:
        raise LoadError(f"{path}: hyper_parameters has no 'model' config")
    state = {k[len(CHECKPOINT_PREFIX):]: v for k, v in ckpt["state_dict"].items()
             if k.startswith(CHECKPOINT_PREFIX)}
    model = build_model(dict(hparams["model"]), state, path)
    tokenizer = None
    expected = recorded_tokenizer_sha256(hparams)
    if hparams.get("tokenizer_dir"):
        tokenizer_dir = resolve(hparams["tokenizer_dir"])
        tokenizer = _load_tokenizer(tokenizer_dir, need_tokenizer)
        if tokenizer is not None:
            verify_tokenizer(expected, tokenizer_dir, path)
    elif need_tokenizer:
        raise LoadError(f"{path}: hyper_parameters has no 'tokenizer_dir'")
    return LoadedModel(model, tokenizer, bool(hparams.get("chat", False)), path,
                       expected or getattr(tokenizer, "sha256", ""), recorded_normalize(hparams, tokenizer))


def read_export_config(directory: Path) -> dict[str, Any]:
    path = directory / CONFIG_FILE
    if not path.is_file():
        raise LoadError(f"{path}: not found; is {directory} an export (python -m src.export)?")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise LoadError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(config, dict) or config.get("format") != EXPORT_FORMAT:
        raise LoadError(f"{path}: not a {EXPORT_FORMAT} export config")
    if config.get("format_version") != EXPORT_VERSION:
        raise LoadError(f"{path}: format_version {config.get('format_version')!r}, this code reads {EXPORT_VERSION}")
    for key in ("model", "weights", "weights_sha256"):
        if key not in config:
            raise LoadError(f"{path}: missing key '{key}'")
    return config


def load_export(directory: Path, need_tokenizer: bool = True) -> LoadedModel:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    config = read_export_config(directory)
    weights = directory / config["weights"]
    if not weights.is_file():
        raise LoadError(f"{weights}: weights file not found")
    if file_sha256(weights) != config["weights_sha256"]:
        raise LoadError(f"{weights}: sha256 differs from {directory / CONFIG_FILE}; the file is corrupt "
                        "or from another export")
    try:
        state = load_file(weights)
    except (SafetensorError, OSError) as exc:
        raise LoadError(f"{weights}: not a readable safetensors file ({exc})") from None
    model = build_model(config["model"], state, weights)
    tokenizer_dir = directory / config.get("tokenizer", TOKENIZER_DIR)
    tokenizer = _load_tokenizer(tokenizer_dir, need_tokenizer)
    expected = str(config.get("tokenizer_sha256") or "")
    if tokenizer is not None:
        verify_tokenizer(expected, tokenizer_dir.absolute(), directory / CONFIG_FILE)
    return LoadedModel(model, tokenizer, bool(config.get("chat", False)), directory,
                       expected or getattr(tokenizer, "sha256", ""), recorded_normalize(config, tokenizer))


def load_for_generation(path: str | Path, need_tokenizer: bool = True) -> LoadedModel:
    """A model (fp32 or the export's dtype, on CPU) and its tokenizer from a checkpoint file or an
    export directory."""
    path = Path(path)
    if path.is_dir():
        return load_export(path, need_tokenizer)
    if path.is_file():
        return load_checkpoint(path, need_tokenizer)
    raise LoadError(f"{path}: no such checkpoint file or export directory")
