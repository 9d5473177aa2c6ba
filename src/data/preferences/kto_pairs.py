"""The `kto_pairs` stage: unpaired preference data (prompt, completion, label) for KTO.

Reads `kto_pairs.dialogues` (the build_dialogues output) and the SFT model (`checkpoint`, else
`fallback_checkpoint`; a chat model, its tokenizer verified by sha256). Prompts are the
conversations of the SFT *training* split up to their last assistant turn; when one does not leave
`reply_share` of the context for the reply, its oldest whole turns are dropped (a prompt whose
newest user turn alone does not fit is dropped, counted). A hash of the prompt puts `val_share` of
the prompts into the KTO validation split, so KTO has held-out desirables for its collapse guard.

Rows (data/kto_pairs/pairs.parquet, in this order):

- `dataset`: each prompt with its own reply, label true;
- `low_score` (with `low_score_below` set): a reply whose overall_score is below it, label false,
  instead of its `dataset` row;
- one preset name per preset: the SFT model's replies under that preset's sampling settings
  (src/data/preferences/undesirables.py), label false, kept only when a detector
  (src/eval/detectors.py) flags them; the rest "turned out fine" and are counted, not written.

Columns: prompt (list<struct<role, content>>), completion (assistant content, no end tag),
completion_ended (the reply closed with <|end|>), completion_tokens, label, preset, finish_reason,
one score and one flag per detector, model_sha256 (of the checkpoint file), split (train/val),
dialogue_row (the conversation's row in dialogues.parquet). Report: data/reports/kto_pairs/report.{json,md};
throughput goes to the stage summary and throughput.json beside the report (not a DVC output: it
differs per run).
"""

from __future__ import annotations

import hashlib
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import torch
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from src.atomic_io import write_json_atomic, write_parquet_atomic
from src.data.preferences.report import write_report
from src.data.preferences.undesirables import PromptRow, SampledReply, sample_preset
from src.data.readers import read_parquet
from src.errors import InputError
from src.eval.detectors import FAILURES, Detection, detect_failures
from src.generation.chat_template import ContextError, fit_to_context
from src.generation.engine import Engine
from src.generation.loading import LoadedModel, file_sha256, load_for_generation
from src.paths import resolve
from src.stage import StageRun
from src.tokenizers.base import CHAT_TOKENS

PAIRS_FILE = "pairs.parquet"
MESSAGES = pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))
SCHEMA = pa.schema(
    [("prompt", MESSAGES), ("completion", pa.string()), ("completion_ended", pa.bool_()),
     ("completion_tokens", pa.int32()), ("label", pa.bool_()), ("preset", pa.string()),
     ("finish_reason", pa.string())]
    + [f for name in FAILURES for f in ((f"{name}_score", pa.float64()), (name, pa.bool_()))]
    + [("model_sha256", pa.string()), ("split", pa.string()), ("dialogue_row", pa.int64())])


class KtoPairsError(InputError, ValueError):
    """Inputs the stage cannot use (no checkpoint, not a chat model, bad dialogues); names the file."""


def choose_checkpoint(p: DictConfig) -> Path:
    for key in ("checkpoint", "fallback_checkpoint"):
        path = resolve(p[key]) if p[key] else None
        if path is not None and path.exists():
            return path
    raise KtoPairsError(f"no SFT model at kto_pairs.checkpoint={p.checkpoint} nor kto_pairs.fallback_checkpoint="
                        f"{p.fallback_checkpoint}; run the sft stage first (dvc repro sft)")


def load_sft_model(path: Path) -> LoadedModel:
    loaded = load_for_generation(path)
    if not loaded.chat:
        raise KtoPairsError(f"{path}: not a chat model (the sft stage marks its checkpoints); undesirable "
                            "replies must come from the SFT model")
    missing = [t for t in CHAT_TOKENS if t not in loaded.tokenizer.special_tokens]
    if missing:
        raise KtoPairsError(f"{path}: its tokenizer has no chat token(s) {missing}")
    return loaded


def val_split(messages: list[dict[str, str]], val_share: float) -> str:
    """train | val by a hash of the prompt: stable across runs, seeds and row order."""
    digest = hashlib.sha256(repr([(m["role"], m["content"]) for m in messages]).encode("utf-8")).digest()
    return "val" if int.from_bytes(digest[:8], "big") / 2**64 < val_share else "train"


def build_prompts(path: Path, tokenizer: Any, block_size: int, p: DictConfig,
                  run: StageRun, seed: int = 0) -> list[PromptRow]:
    """The prompts of the SFT training split (see the module docstring); drops are counted."""
    table = read_parquet(path, hint="rebuild it with the build_dialogues stage")
    missing = [c for c in ("conversation", "split") if c not in table.column_names]
    if missing:
        raise KtoPairsError(f"{path}: missing column(s) {missing}; have {table.column_names}")
    scores = (table.column("overall_score").to_pylist() if "overall_score" in table.column_names
              else [None] * table.num_rows)
    longest_reply = max((pr.max_new_tokens for pr in p.presets.values()), default=1)
    prompts: list[PromptRow] = []
    for row, (conversation, split, score) in enumerate(zip(table.column("conversation").to_pylist(),
                                                           table.column("split").to_pylist(), scores, strict=True)):
        run.summary.add("read", f"conversations {split}")
        if split != "train":
            continue
        messages = [dict(m) for m in conversation or []]
        if len(messages) < 2 or messages[-1].get("role") != "assistant":
            run.summary.add("dropped", "conversation without a reply to its last turn")
            continue
        try:
            fitted = fit_to_context(tokenizer, messages[:-1], block_size, longest_reply, p.reply_share)
        except ContextError:
            run.summary.add("dropped", "prompt too long for the context")
            continue
        except ValueError as exc:
            raise KtoPairsError(f"{path}: row {row}: {exc}") from None
        score = None if score is None or (isinstance(score, float) and math.isnan(score)) else float(score)
        prompts.append(PromptRow(row, fitted.messages, fitted.ids, str(messages[-1]["content"]), score,
                                 val_split(fitted.messages, p.val_share)))
    if not prompts:
        raise KtoPairsError(f"{path}: no usable prompt in the training split")
    return limit_prompts(prompts, p.get("max_prompts"), seed, run)


def limit_prompts(prompts: list[PromptRow], max_prompts: int | None, seed: int, run: StageRun) -> list[PromptRow]:
    """A seeded subset of `max_prompts` prompts in their original order (all when None or fewer)."""
    if max_prompts is None or len(prompts) <= max_prompts:
        return prompts
    keep = np.sort(np.random.default_rng(seed).choice(len(prompts), size=max_prompts, replace=False))
    run.summary.add("dropped", "prompts beyond kto_pairs.max_prompts", len(prompts) - max_prompts)
    return [prompts[i] for i in keep]


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise KtoPairsError("kto_pairs.device=cuda but no CUDA device is available")
    return torch.device(name)


def make_row(prompt: PromptRow, completion: str, *, ended: bool, n_tokens: int, label: bool, preset: str,
             finish_reason: str, found: dict[str, Detection], model_sha: str) -> dict[str, Any]:
    row: dict[str, Any] = {
        "prompt": prompt.messages, "completion": completion, "completion_ended": ended,
        "completion_tokens": n_tokens, "label": label, "preset": preset, "finish_reason": finish_reason}
    for name, d in found.items():
        row[f"{name}_score"], row[name] = float(d.score), bool(d.flagged)
    row.update(model_sha256=model_sha, split=prompt.split, dialogue_row=prompt.row)
    return row


def dataset_rows(prompts: list[PromptRow], tokenizer: Any, block_size: int, p: DictConfig,
                 thresholds: dict[str, Any], model_sha: str) -> list[dict[str, Any]]:
    rows = []
    for prompt in prompts:
        ids = tokenizer.encode(prompt.reply)
        low = p.low_score_below is not None and prompt.overall_score is not None \
            and prompt.overall_score < p.low_score_below
        found = detect_failures(prompt.reply, prompt.text, ended=True, n_tokens=len(ids),
                                max_new_tokens=max(1, block_size + 1 - len(prompt.ids)), tokens=ids,
                                thresholds=thresholds)
        rows.append(make_row(prompt, prompt.reply, ended=True, n_tokens=len(ids), label=not low,
                             preset="low_score" if low else "dataset", finish_reason="dataset",
                             found=found, model_sha=model_sha))
    return rows


def detect_sampled(reply: SampledReply, thresholds: dict[str, Any]) -> dict[str, Detection]:
    return detect_failures(reply.text, reply.prompt.text, ended=reply.ended, n_tokens=len(reply.tokens),
                           max_new_tokens=reply.limit, tokens=reply.tokens, thresholds=thresholds)


def kto_pairs(cfg: DictConfig, run: StageRun) -> None:
    p = cfg.kto_pairs
    checkpoint = choose_checkpoint(p)
    loaded = load_sft_model(checkpoint)
    tokenizer, block = loaded.tokenizer, loaded.model.block_size
    model_sha = file_sha256(checkpoint)
    run.summary.notes.append(f"model {checkpoint} (sha256 {model_sha[:12]})")
    thresholds = dict(OmegaConf.to_container(p.detectors, resolve=True))
    prompts = build_prompts(resolve(p.dialogues), tokenizer, block, p, run, cfg.seed)
    run.summary.add("read", "prompts from the sft train split", len(prompts))

    rows = dataset_rows(prompts, tokenizer, block, p, thresholds, model_sha)
    torch.manual_seed(cfg.seed)
    device = pick_device(p.device)
    engine = Engine(loaded.model, tokenizer, precision=p.precision, device=device)
    stats: dict[str, dict[str, Any]] = {}
    examples: dict[str, list[dict[str, Any]]] = {}
    total = sum(int(pr.count) for pr in p.presets.values())
    started = time.perf_counter()
    new_tokens = 0
    with tqdm(total=total, desc="kto_pairs: sampling", unit="reply", disable=None) as bar:
        for index, (name, preset) in enumerate(p.presets.items()):
            result = sample_preset(engine, prompts, name, preset, preset_index=index,
                                   samples_per_prompt=p.samples_per_prompt, batch_size=p.batch_size,
                                   seed=cfg.seed)
            bar.update(len(result.replies))
            new_tokens += result.new_tokens
            kept = fine = 0
            flagged_by = dict.fromkeys(FAILURES, 0)
            finish: dict[str, int] = {}
            for reply in result.replies:
                found = detect_sampled(reply, thresholds)
                finish[reply.finish_reason] = finish.get(reply.finish_reason, 0) + 1
                for failure, d in found.items():
                    flagged_by[failure] += int(d.flagged)
                if not any(d.flagged for d in found.values()):
                    fine += 1
                    continue
                kept += 1
                rows.append(make_row(reply.prompt, reply.text, ended=reply.ended, n_tokens=len(reply.tokens),
                                     label=False, preset=name, finish_reason=reply.finish_reason, found=found,
                                     model_sha=model_sha))
            stats[name] = {"sampled": len(result.replies), "kept": kept, "turned_out_fine": fine,
                           "flagged_by": flagged_by, "finish_reasons": dict(sorted(finish.items())),
                           "settings": dict(OmegaConf.to_container(preset, resolve=True)),
                           "rows_per_call": result.rows_per_call}
            run.summary.add("read", f"sampled {name}", len(result.replies))
            run.summary.add("dropped", f"turned out fine {name}", fine)
    seconds = time.perf_counter() - started

    out = resolve(p.out_dir) / PAIRS_FILE
    write_parquet_atomic(out, pa.Table.from_pylist(rows, schema=SCHEMA))
    for row in rows:
        examples.setdefault(row["preset"], []).append(row)
    report = write_report(resolve(p.report_dir), rows, stats, examples, int(p.report_examples),
                          {"checkpoint": str(p.checkpoint if checkpoint == resolve(p.checkpoint) else p.fallback_checkpoint),
                           "model_sha256": model_sha, "prompts": len(prompts),
                           "prompts_val": sum(pr.split == "val" for pr in prompts),
                           "detectors": thresholds})
    sampled = sum(s["sampled"] for s in stats.values())
    throughput = {"seconds": round(seconds, 3), "samples": sampled, "new_tokens": new_tokens,
                  "samples_per_s": round(sampled / seconds, 3) if seconds > 0 else 0.0,
                  "tokens_per_s": round(new_tokens / seconds, 1) if seconds > 0 else 0.0,
                  "device": str(device), "precision": engine.precision}
    write_json_atomic(resolve(p.report_dir) / "throughput.json", throughput)
    run.summary.timings.update({"sampling_s": seconds, "samples_per_s": throughput["samples_per_s"],
                                "tokens_per_s": throughput["tokens_per_s"]})
    for key, n in report["rows"].items():
        run.summary.add("wrote", f"rows {key}", n)
    run.log_dict({**report, "throughput": throughput}, "kto_pairs_report.json")
    run.log_metrics({f"kto_pairs.{name}.{k}": float(v) for name, s in stats.items()
                     for k, v in s.items() if isinstance(v, int)})
    run.summary.notes.append(f"wrote {out}")
