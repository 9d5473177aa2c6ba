"""Starting the `own` cross-encoder from a language model of the project (`reranker.init_from`).

A from-scratch encoder gets one bit of supervision per pair, which on real subtitles is too little
to learn what words mean (the logits stay at a constant, val ROC AUC at chance). A pretrain or SFT
checkpoint of the same tokenizer already knows that; the cross-encoder takes its transformer:

- the architecture is the checkpoint's (layers, width, heads, norms, ...), except `block_size` and
  `dropout`, which stay the reranker's (`reranker.model`); the rest of `reranker.model` is unused;
- every tensor whose name and shape match is copied; the learned position table is cut to (or,
  when the reranker's block is longer, copied into the first rows of) the reranker's; what is
  not copied keeps its fresh initialization and is named in the stage summary;
- the tokenizer at `reranker.tokenizer_dir` must be the one the checkpoint recorded (sha256), as
  every other loader checks (src/generation/loading.py: verify_tokenizer).

Accepted checkpoints: Lightning checkpoints whose state_dict holds a GPT under "model." (pretrain,
sft, kto) or a cross-encoder under "model.encoder." (an earlier reranker run).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from src.errors import InputError
from src.generation.loading import LoadError, recorded_tokenizer_sha256, verify_tokenizer
from src.training.checkpoint import read_checkpoint

POSITION_TABLE = "transformer.wpe.weight"
KEEP_FROM_RERANKER = ("block_size", "dropout")


class RerankerInitError(InputError, ValueError):
    """A reranker.init_from checkpoint that cannot start the encoder; the message names it."""


@dataclass
class InitReport:
    copied: list[str] = field(default_factory=list)
    partial: list[str] = field(default_factory=list)  # the position table, cut or padded
    fresh: list[str] = field(default_factory=list)  # encoder tensors the checkpoint had no match for
    unused: list[str] = field(default_factory=list)  # checkpoint tensors the encoder has no place for

    def notes(self, path: Path) -> list[str]:
        out = [f"encoder initialized from {path}: {len(self.copied)} tensors copied, {len(self.partial)} "
               f"partly ({', '.join(self.partial) or '-'}), {len(self.fresh)} fresh "
               f"({', '.join(self.fresh[:6]) or '-'}), {len(self.unused)} of the checkpoint unused "
               f"({', '.join(self.unused[:6]) or '-'})"]
        return out


def read_init_checkpoint(path: Path, tokenizer_dir: str | Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """(the checkpoint's GPT config, its GPT weights), after checking its tokenizer."""
    if not path.is_file():
        raise RerankerInitError(f"{path}: checkpoint not found (reranker.init_from)")
    try:
        ckpt = read_checkpoint(path)
        hparams = dict(ckpt["hyper_parameters"])
        model = dict(hparams["model"])
        raw = ckpt["state_dict"]
    except InputError as exc:
        raise RerankerInitError(f"{exc} (reranker.init_from)") from None
    except (KeyError, TypeError) as exc:
        raise RerankerInitError(f"{path}: not a training checkpoint of this project (no {exc}; "
                                "reranker.init_from)") from None
    if model.get("backbone") == "own":  # an earlier reranker: its encoder
        model, prefix = dict(model["model"]), "model.encoder."
    elif model.get("backbone"):
        raise RerankerInitError(f"{path}: a {model['backbone']!r} reranker; reranker.init_from needs a GPT "
                                "(pretrain, sft) or an `own` reranker checkpoint")
    else:
        prefix = "model."
    state = {k.removeprefix(prefix): v for k, v in raw.items() if k.startswith(prefix)}
    if not state or "n_embd" not in model:
        raise RerankerInitError(f"{path}: holds no GPT weights (reranker.init_from)")
    try:
        verify_tokenizer(recorded_tokenizer_sha256(hparams) or None, tokenizer_dir, path)
    except LoadError as exc:
        raise RerankerInitError(f"{exc} (reranker.init_from, reranker.tokenizer_dir)") from None
    return model, state


def encoder_config(checkpoint_model: dict[str, Any], reranker_model: dict[str, Any],
                   tokenizer_vocab: int, path: Path) -> dict[str, Any]:
    config = dict(checkpoint_model)
    for key in KEEP_FROM_RERANKER:
        config[key] = reranker_model[key]
    if config["vocab_size"] < tokenizer_vocab:
        raise RerankerInitError(f"{path}: its vocabulary ({config['vocab_size']}) is smaller than the "
                                f"tokenizer's ({tokenizer_vocab}); reranker.init_from needs a model of this tokenizer")
    return config


def copy_weights(encoder: torch.nn.Module, state: dict[str, torch.Tensor]) -> InitReport:
    """Copy `state` into `encoder` where names and shapes match (see the module docstring)."""
    report = InitReport()
    own = encoder.state_dict()
    with torch.no_grad():
        for name, target in own.items():
            source = state.get(name)
            if source is None:
                report.fresh.append(name)
            elif source.shape == target.shape:
                target.copy_(source.to(target.dtype))
                report.copied.append(name)
            elif name == POSITION_TABLE and source.shape[1:] == target.shape[1:]:
                rows = min(source.shape[0], target.shape[0])
                target[:rows].copy_(source[:rows].to(target.dtype))
                report.partial.append(f"{name} ({rows} of {target.shape[0]} rows)")
            else:
                report.fresh.append(f"{name} (shape {tuple(source.shape)} vs {tuple(target.shape)})")
    report.unused = sorted(set(state) - set(own))
    encoder.load_state_dict(own)
    return report
