"""Validation loss and bits per byte of each language model per corpus, on held-out text.

The held-out text is what the stages held out, by their own rules:
- literature, subtitles: the documents the tokenize stage wrote to val.bin (the hash split of
  src/tokenizers/split.py over the same document ids, fallbacks for tiny corpora included), read
  with the tokenize stage's corpus reader; a subtitle document is one file's lines;
- dialogues: the conversations build_dialogues marked `split == "val"` (what SFT validates on).

Each corpus is capped at `max_bytes` UTF-8 bytes (documents in file order; the last one cut at a
line end), so the sample runs in seconds and a real corpus in minutes.

How text is scored (src/generation/scoring.py `completion_logprobs`, the scorer KTO and the probes
use): a plain corpus is the token stream `<eot> doc1 <eot> doc2 <eot> ...`, as the tokenize stage
lays it out, cut into windows of block_size predicted tokens, each window read from a fresh context
(as pretraining's validation does). A conversation is scored per assistant turn: the chat template
up to the turn is the prompt, the turn's content and its `<|end|>` are the completion (SFT's loss
tokens; the pretrained model is scored on the same tokens, so the columns compare).

loss = summed nats / scored tokens; bpb = summed nats / ln 2 / UTF-8 bytes of the scored text (the
document text, or the replies' content), so models with different tokenizers compare. The unigram
baseline scores the same token ids with the train.bin frequencies of src/bench/unigram_baseline.py.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from src.bench.unigram_baseline import token_counts, unigram_log_probs, unigram_nats
from src.errors import InputError
from src.generation.scoring import completion_logprobs, encode_pair
from src.paths import resolve
from src.tokenizers.corpus import CorpusSource, iter_documents
from src.tokenizers.split import BOTH, VAL, assign_splits
from src.training.data import read_meta
from src.training.sft_data import check_turns, read_dialogues

PLAIN = ("literature", "subtitles")


@dataclass
class HeldOut:
    """One corpus's held-out text, capped."""

    corpus: str
    texts: list[str] = field(default_factory=list)  # plain corpora: documents
    conversations: list[list[dict[str, Any]]] = field(default_factory=list)  # dialogues
    bytes: int = 0
    documents: int = 0  # held-out documents (conversations) in the corpus
    left_out: int = 0  # of those, beyond the cap
    dropped: Counter = field(default_factory=Counter)  # reason -> count (turns, conversations)


def _cap(texts: Iterable[str], max_bytes: int) -> tuple[list[str], int, int, int]:
    """(texts kept, their UTF-8 bytes, texts seen, texts left out) under `max_bytes` (0 = all);
    the text that crosses the cap is cut after its last line end within it (or not kept when it
    has none there)."""
    kept: list[str] = []
    total = seen = 0
    for text in texts:
        seen += 1
        size = len(text.encode("utf-8"))
        if max_bytes and total >= max_bytes:
            continue
        if max_bytes and total + size > max_bytes:
            head = text.encode("utf-8")[:max_bytes - total].decode("utf-8", errors="ignore")
            cut = head.rfind("\n")
            if cut <= 0:
                continue
            text, size = head[:cut + 1], len(head[:cut + 1].encode("utf-8"))
        kept.append(text)
        total += size
    return kept, total, seen, seen - len(kept)


# the tokenize stage's own default for `tokenize.corpora` (src/config/sections/tokenize.py)
PLAIN_SPLIT_DEFAULT = ("literature", "subtitles")


def _source(lcfg: Any, name: str) -> CorpusSource:
    key = f"{name}_path"
    languages = tuple(lcfg.subtitles_languages or ()) if name == "subtitles" else ()
    return CorpusSource(name, resolve(lcfg[key]), f"eval.lm.{key}", languages)


def plain_heldout(lcfg: Any, names: Sequence[str], notes: list[str]) -> dict[str, HeldOut]:
    """The held-out documents of the plain corpora `names` (see the module docstring). A corpus
    whose file is missing is left out with a note."""
    wanted = [n for n in names if n in PLAIN]
    present = [n for n in wanted if _source(lcfg, n).path.is_file()]
    for n in wanted:
        if n not in present:
            notes.append(f"lm: {n}: {_source(lcfg, n).path} not found (eval.lm.{n}_path); corpus left out")
    # Corpora split together by the tokenize stage are listed together, as it lists them, so the
    # tiny-corpus fallbacks move the same document; any other corpus is split on its own.
    together = list(lcfg.split_corpora) if lcfg.split_corpora is not None else list(PLAIN_SPLIT_DEFAULT)
    groups = [[n for n in together if n in present]] + [[n] for n in present if n not in together]
    out: dict[str, HeldOut] = {}
    for group in filter(None, groups):
        sources = [_source(lcfg, n) for n in group]
        ids, seen = [], set()
        for doc in iter_documents(sources):
            if doc.text.strip() and doc.doc_id not in seen:
                seen.add(doc.doc_id)
                ids.append(doc.doc_id)
        splits, split_notes = assign_splits(ids, lcfg.val_fraction, lcfg.split_salt) if ids else ({}, [])
        notes.extend(f"lm: {n}" for n in split_notes)
        texts: dict[str, list[str]] = {n: [] for n in group}
        for doc in iter_documents(sources):
            if splits.get(doc.doc_id) in (VAL, BOTH) and doc.text.strip():
                texts[doc.corpus].append(doc.text)
        for n in group:
            kept, size, seen_docs, left = _cap(texts[n], lcfg.max_bytes)
            out[n] = HeldOut(n, texts=kept, bytes=size, documents=seen_docs, left_out=left)
    return out


def dialogues_heldout(lcfg: Any, notes: list[str]) -> HeldOut | None:
    path = resolve(lcfg.dialogues_path)
    if not path.is_file():
        notes.append(f"lm: dialogues: {path} not found (eval.lm.dialogues_path); corpus left out")
        return None
    held = HeldOut("dialogues")
    usable = []
    for conversation in read_dialogues(path)["val"]:
        reason = check_turns(conversation)
        if reason:
            held.dropped[f"conversation_{reason}"] += 1
        else:
            usable.append(conversation)
    held.documents = len(usable)
    total = 0
    for conversation in usable:
        size = sum(len(m["content"].encode("utf-8")) for m in conversation if m["role"] == "assistant")
        if lcfg.max_bytes and total + size > lcfg.max_bytes and held.conversations:
            held.left_out += 1
            continue
        held.conversations.append(conversation)
        total += size
    held.bytes = total
    return held


def heldout(lcfg: Any, notes: list[str]) -> dict[str, HeldOut]:
    """Every configured corpus's held-out text, by corpus (missing ones left out with a note)."""
    out = plain_heldout(lcfg, list(lcfg.corpora), notes)
    if "dialogues" in lcfg.corpora:
        held = dialogues_heldout(lcfg, notes)
        if held is not None:
            out["dialogues"] = held
    return {name: out[name] for name in lcfg.corpora if name in out}


@dataclass
class Scored:
    """What one tokenizer makes of one corpus: (prompt, completion) pairs and the bytes they cover."""

    prompts: list[list[int]]
    completions: list[list[int]]
    bytes: int
    dropped: Counter = field(default_factory=Counter)

    @property
    def tokens(self) -> int:
        return sum(map(len, self.completions))


def plain_pairs(tokenizer: Any, texts: Sequence[str], block_size: int) -> tuple[list[list[int]], list[list[int]]]:
    """`<eot> doc <eot> doc <eot>...` in windows of `block_size` predicted tokens: each window's
    prompt is the one token before it."""
    stream = [tokenizer.eot_id]
    for text in texts:
        stream += list(tokenizer.encode(text)) + [tokenizer.eot_id]
    prompts, completions = [], []
    for start in range(0, len(stream) - 1, block_size):
        prompts.append([stream[start]])
        completions.append(stream[start + 1:start + 1 + block_size])
    return prompts, completions


def dialogue_pairs(tokenizer: Any, conversations: Sequence[Sequence[Mapping[str, Any]]], block_size: int,
                   dropped: Counter) -> tuple[list[list[int]], list[list[int]], int]:
    """One pair per assistant turn (the template up to it, then its content and <|end|>), and the
    UTF-8 bytes of the scored turns. A turn longer than the context is dropped (counted)."""
    prompts, completions, size = [], [], 0
    for conversation in conversations:
        for i, m in enumerate(conversation):
            if m["role"] != "assistant":
                continue
            try:
                prompt, completion = encode_pair(tokenizer, conversation[:i], m["content"], ended=True)
            except ValueError:
                dropped["turn_special_token_in_content"] += 1
                continue
            if len(completion) > block_size:
                dropped["turn_longer_than_context"] += 1
                continue
            prompts.append(prompt)
            completions.append(completion)
            size += len(m["content"].encode("utf-8"))
    return prompts, completions, size


def encode_heldout(tokenizer: Any, held: HeldOut, block_size: int) -> Scored:
    if held.corpus == "dialogues":
        dropped: Counter = Counter()
        prompts, completions, size = dialogue_pairs(tokenizer, held.conversations, block_size, dropped)
        return Scored(prompts, completions, size, dropped)
    prompts, completions = plain_pairs(tokenizer, held.texts, block_size)
    return Scored(prompts, completions, held.bytes)


def figures(nats: float, tokens: int, n_bytes: int) -> dict[str, Any]:
    return {"loss": nats / tokens if tokens else None,
            "bpb": nats / math.log(2) / n_bytes if n_bytes else None,
            "tokens": tokens, "bytes": n_bytes}


def score_model(loaded: Any, held: Mapping[str, HeldOut], batch_size: int) -> tuple[dict[str, Any], Counter]:
    """{corpus: {loss, bpb, tokens, bytes}} for one LoadedModel, and what was dropped."""
    model, tok = loaded.model, loaded.tokenizer
    if tok is None:
        raise InputError(f"{loaded.source}: the language-model figures need the model's tokenizer")
    out: dict[str, Any] = {}
    dropped: Counter = Counter()
    was_training = model.training
    model.eval()
    try:
        for corpus, h in held.items():
            scored = encode_heldout(tok, h, model.block_size)
            dropped.update({f"{corpus}_{k}": v for k, v in scored.dropped.items()})
            with torch.inference_mode():
                logps, _ = completion_logprobs(model, scored.prompts, scored.completions, batch_size=batch_size)
            out[corpus] = figures(-float(logps.double().sum()), scored.tokens, scored.bytes)
    finally:
        model.train(was_training)
    return out, dropped


def unigram_baseline(lcfg: Any, held: Mapping[str, HeldOut], block_size: int, notes: list[str]) -> dict[str, Any]:
    """{corpus: {loss, bpb, tokens, bytes}} of the unigram model of `tokens_dir`'s train.bin on the
    same token ids the models are scored on ({} with a note when the token files are missing)."""
    from src.tokenizers import load_tokenizer

    tokens_dir = resolve(lcfg.tokens_dir)
    if not (tokens_dir / "meta.json").is_file():
        notes.append(f"lm: unigram baseline left out: {tokens_dir / 'meta.json'} not found (eval.lm.tokens_dir)")
        return {}
    meta = read_meta(tokens_dir)
    tok = load_tokenizer(resolve(meta.tokenizer_dir))
    log_probs = unigram_log_probs(token_counts(meta, "train"), lcfg.unigram_alpha)
    out = {}
    for corpus, h in held.items():
        scored = encode_heldout(tok, h, block_size)
        ids = np.fromiter((t for c in scored.completions for t in c), dtype=np.int64)
        if len(ids) and int(ids.max()) >= meta.vocab_size:
            raise InputError(f"{tokens_dir / 'meta.json'}: vocab_size {meta.vocab_size}, but its tokenizer "
                             f"{meta.tokenizer_dir} makes id {int(ids.max())}: rebuild the tokens")
        counts = np.bincount(ids, minlength=meta.vocab_size)
        out[corpus] = figures(unigram_nats(log_probs, counts), len(ids), scored.bytes)
    return out
