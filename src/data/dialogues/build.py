"""Stage `build_dialogues`: one parquet of conversations for supervised fine-tuning.

Sources (each switchable in `conf/build_dialogues/`): the embedded sample and instruction datasets
on disk (filtered, with counts), dialogue from our cleaned subtitles and from our literature
(direct speech, the author's words removed). Every conversation is normalized like the
pretraining text, checked against the contract in `conversation.py` (a bad one is counted by
reason, never fatal), deduplicated, split train/val by a stable hash, and measured in tokens of
the pipeline's tokenizer. Output columns: conversation, source, doc_id, split, overall_score,
safety, pii_leak, refusal, topic, origin, n_tokens, n_loss_tokens.
"""

from __future__ import annotations

import heapq
import sys
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from src.atomic_io import atomic_path
from src.data.dialogues.conversation import alternating, conversation_hash, conversation_problem
from src.data.dialogues.datasets import FileCounts, dataset_files, read_dataset
from src.data.dialogues.report import DialogueStats, write_report
from src.data.dialogues.speech import speech_runs
from src.data.dialogues.windows import cut_windows, subtitle_windows
from src.data.literature import literature_texts, read_text_file  # noqa: F401 - read_text_file re-exported for the probe
from src.errors import InputError
from src.generation.chat_template import encode_for_training
from src.paths import resolve
from src.stage import StageRun
from src.tokenizers import load_tokenizer
from src.tokenizers.split import TRAIN, VAL, split_score

MESSAGE = pa.struct([("role", pa.string()), ("content", pa.string())])
SCHEMA = pa.schema([
    ("conversation", pa.list_(MESSAGE)), ("source", pa.string()), ("doc_id", pa.string()),
    ("split", pa.string()), ("overall_score", pa.float64()), ("safety", pa.float64()),
    ("pii_leak", pa.int32()), ("refusal", pa.int32()), ("topic", pa.string()),
    ("origin", pa.string()), ("n_tokens", pa.int32()), ("n_loss_tokens", pa.int32()),
])
_SPLIT_KEY = "_split_key"
WRITE_ROWS = 4096


class DialogueWriter:
    """Checks, normalizes, deduplicates, splits and measures records; writes them in row groups."""

    def __init__(self, path: Path, tokenizer: Any, normalize: Callable[[str], str] | None,
                 val_fraction: float, salt: str, split_by: str, stats: DialogueStats, dedup: bool,
                 val_min: int = 1) -> None:
        self.path, self.tok, self.normalize = path, tokenizer, normalize
        self.val_fraction, self.salt, self.split_by = val_fraction, salt, split_by
        # at least this many val conversations when val_fraction > 0 (small inputs, like the sample)
        self.val_min = val_min if val_fraction > 0 else 0
        self.stats, self.dedup = stats, dedup
        self.seen: set[str] = set()
        self.rows: list[dict[str, Any]] = []
        self.writer = pq.ParquetWriter(path, SCHEMA.append(pa.field(_SPLIT_KEY, pa.string())))
        self.n_val = 0
        # The train split keys with the lowest split scores, the ones the val fallback would move
        # (most likely to be val under a larger val_fraction): a max-heap of (-score, key) of at most
        # val_min keys, with their conversation counts. A key's score never changes, so one pushed
        # out is never needed again.
        self.lowest: list[tuple[float, str]] = []
        self.lowest_counts: dict[str, int] = {}

    def add(self, source: str, record: dict[str, Any], group: str | None = None) -> None:
        src = self.stats.source(source)
        src.read += 1
        conv = record.get("conversation")
        problem = conversation_problem(conv)
        if problem is None:
            conv = [{"role": m["role"], "content": m["content"]} for m in conv]
            if self.normalize is not None:
                conv = [{"role": m["role"], "content": self.normalize(m["content"]).strip()} for m in conv]
                problem = conversation_problem(conv)  # normalization may empty a content
        if problem is not None:
            src.bad_rows[problem] += 1
            return
        digest = conversation_hash(conv)
        if self.dedup:
            if digest in self.seen:
                src.duplicates += 1
                return
            self.seen.add(digest)
        key = group if self.split_by == "document" and group else digest
        score = split_score(key, self.salt)
        split = VAL if score < self.val_fraction else TRAIN
        self.n_val += split == VAL
        if split == TRAIN:
            self._offer_lowest(score, key)
        ids, mask = encode_for_training(self.tok, conv)
        n_loss = sum(mask)
        src.add_written(split, len(conv), len(ids), n_loss)
        self.stats.offer_example(source, conv, ids, mask)
        self.rows.append({
            "conversation": conv, "source": source, "doc_id": record.get("doc_id") or f"{source}:{digest}",
            "split": split, **{k: record.get(k) for k in ("overall_score", "safety", "pii_leak", "refusal",
                                                          "topic", "origin")},
            "n_tokens": len(ids), "n_loss_tokens": n_loss, _SPLIT_KEY: key,
        })
        if len(self.rows) >= WRITE_ROWS:
            self._flush()

    def _offer_lowest(self, score: float, key: str) -> None:
        if key in self.lowest_counts:
            self.lowest_counts[key] += 1
        elif len(self.lowest) < self.val_min:
            heapq.heappush(self.lowest, (-score, key))
            self.lowest_counts[key] = 1
        elif self.lowest and score < -self.lowest[0][0]:
            _, gone = heapq.heapreplace(self.lowest, (-score, key))
            del self.lowest_counts[gone]
            self.lowest_counts[key] = 1

    def keys_to_move(self) -> list[str]:
        """Train split keys to move to val, lowest split score first, until val holds val_min
        conversations; train always keeps at least one."""
        need = self.val_min - self.n_val
        n_train = self.stats.split_total(TRAIN)
        moved: list[str] = []
        for _, key in sorted(self.lowest, reverse=True):  # -score descending = score ascending
            if need <= 0 or n_train - self.lowest_counts[key] < 1:
                break
            moved.append(key)
            need -= self.lowest_counts[key]
            n_train -= self.lowest_counts[key]
        return moved

    def _flush(self) -> None:
        if self.rows:
            self.writer.write_table(pa.Table.from_pylist(self.rows, schema=self.writer.schema))
            self.rows = []

    def close(self) -> None:
        self._flush()
        self.writer.close()

    def finish(self, out: Path, notes: list[str]) -> None:
        """Write the final file: the split fallback applied (no empty val when one was asked for)."""
        self.close()
        moved = set(self.keys_to_move())
        if moved:
            n = sum(self.lowest_counts[k] for k in moved)
            notes.append(f"val_fraction={self.val_fraction} put {self.n_val} conversation(s) in val, fewer "
                         f"than val_min_conversations={self.val_min}; moved {n} more there (the train "
                         f"{self.split_by}s of lowest split score)")
        pf = pq.ParquetFile(self.path)
        with pq.ParquetWriter(out, SCHEMA) as writer:
            for batch in pf.iter_batches(batch_size=WRITE_ROWS):
                table = pa.Table.from_batches([batch])
                if moved:
                    keys = table.column(_SPLIT_KEY).to_pylist()
                    splits = [VAL if k in moved else s for k, s in zip(keys, table.column("split").to_pylist(),
                                                                        strict=True)]
                    for k, s in zip(keys, table.column("source").to_pylist(), strict=True):
                        if k in moved:
                            self.stats.source(s).move_to_val()
                    table = table.set_column(table.schema.get_field_index("split"), "split",
                                             pa.array(splits, pa.string()))
                writer.write_table(table.drop_columns([_SPLIT_KEY]))


def _dataset_records(path: Path, source: str, filters: Any, stats: DialogueStats,
                     bad_lines: list[str]) -> Iterator[dict[str, Any]]:
    counts = FileCounts(str(path))
    stats.source(source).files.append(counts)
    yield from read_dataset(path, filters, counts, bad_lines)


def literature_conversations(text: str, lcfg: Any, counts: Counter[str]) -> Iterator[list[str]]:
    w = lcfg.window
    for run in speech_runs(text, counts, lcfg.min_quoted_share, lcfg.inline_colon_dash, w.max_turn_chars):
        counts["runs"] += 1
        yield from cut_windows(run, w.min_turns, w.max_turns, counts)


def build_dialogues(cfg: DictConfig, run: StageRun) -> None:
    c = cfg.build_dialogues
    tok = load_tokenizer(resolve(c.tokenizer_dir))
    normalize = None
    if c.normalize_text:
        from src.text.normalize import as_normalize_config, normalize_text

        ncfg = as_normalize_config(OmegaConf.to_container(cfg.normalize, resolve=True))
        normalize = lambda text: normalize_text(text, ncfg)  # noqa: E731
    out = resolve(c.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    stats = DialogueStats(tok, c.report_examples)
    notes: list[str] = []
    bad_lines: list[str] = []
    bar = tqdm(desc="build_dialogues", unit="conv", disable=None, file=sys.stderr)
    # The unsplit rows wait in a scratch folder (the val fallback may move some once all are seen);
    # the final file is written to a temporary beside `out`, fsync'ed and renamed (atomic_path).
    with tempfile.TemporaryDirectory(prefix=".dialogues.", dir=out.parent) as tmp:
        writer = DialogueWriter(Path(tmp) / "unsplit.parquet", tok, normalize, c.val_fraction,
                                c.split_salt, c.split_by, stats, c.dedup, c.val_min_conversations)
        try:
            def add(source: str, record: dict[str, Any], group: str | None = None) -> None:
                writer.add(source, record, group)
                bar.update()

            if c.sample.enabled:
                path = resolve(c.sample.path)
                if not path.is_file():
                    raise InputError(f"{path}: not found (build_dialogues.sample.path; write it with "
                                     "python -m src.data.dialogues.sample_data)")
                for rec in _dataset_records(path, "sample", c.datasets.filters, stats, bad_lines):
                    add("sample", rec)
            if c.datasets.enabled:
                for path in dataset_files([resolve(p) for p in c.datasets.paths]):
                    source = f"dataset:{path.stem}"
                    for rec in _dataset_records(path, source, c.datasets.filters, stats, bad_lines):
                        add(source, rec, group=None)
            if c.subtitles.enabled:
                s = c.subtitles
                path = resolve(s.path)
                if not path.is_file():
                    raise InputError(f"{path}: not found (build_dialogues.subtitles.path; run clean_subs, "
                                     "or set build_dialogues.subtitles.enabled=false)")
                counts = stats.source("subtitles").extraction
                for win in subtitle_windows(path, list(s.languages), s.max_gap_ms, s.window.min_turns,
                                            s.window.max_turns, s.window.max_turn_chars, counts):
                    add("subtitles", {"conversation": alternating(win.turns),
                                      "doc_id": f"subtitles:{win.file_id}:{win.first_line}"}, group=win.file_id)
            if c.literature.enabled:
                counts = stats.source("literature").extraction
                for doc_id, text in literature_texts(c.literature.path, c.literature.text_paths, "build_dialogues",
                                                 counts, apparatus_rules=c.literature.apparatus_rules):
                    for k, turns in enumerate(literature_conversations(text, c.literature, counts)):
                        add("literature", {"conversation": alternating(turns), "doc_id": f"{doc_id}#{k}"},
                            group=doc_id)
            bar.close()
            with atomic_path(out) as staged:
                writer.finish(staged, notes)
        finally:
            bar.close()
            writer.writer.close()
    if not stats.total_written():
        notes.append("no conversation was written: every source was off, empty or filtered out")
    if bad_lines:
        notes.append(f"{len(bad_lines)} JSONL line(s) were not JSON objects, e.g. {bad_lines[0]}")
    report = write_report(resolve(c.report_dir), stats, tok, notes, bad_lines, out)
    for name, src in stats.sources.items():
        run.summary.add("read", f"{name}_conversations", sum(f.rows for f in src.files) if src.files else src.read)
        for reason, n in src.bad_rows.items():
            run.summary.add("dropped", f"{name}_{reason}", n)
        if src.duplicates:
            run.summary.add("dropped", f"{name}_duplicate", src.duplicates)
        filtered = sum(fc.rows - fc.kept for fc in src.files)
        if filtered:
            run.summary.add("dropped", f"{name}_filtered_out", filtered)
    for split in (TRAIN, VAL):
        run.summary.add("wrote", f"{split}_conversations", stats.split_total(split))
    run.summary.notes.extend(notes)
    run.log_metrics(report["metrics"])
    run.log_artifact(resolve(c.report_dir))
    run.log_text(report["examples_text"], "examples.txt")
