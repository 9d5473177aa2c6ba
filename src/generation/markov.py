"""An order-n Markov writer over words: cheap candidate lines for the reranker to choose from.

A line is cut into pieces: words and punctuation runs, each carrying the single space before it
(" world", ","), so joining the pieces gives the line back exactly. The model counts, for every key
of 1..`order` consecutive pieces seen in the corpus, which piece followed it how often. A key with
fewer than `min_choices` distinct continuations gives way to its longest shorter key that has
enough (so the writer recombines lines instead of copying them). Those choices are made once, at
build time: the counts become an automaton (src/generation/markov_table.py) in which every
(state, piece) leads to a known state, so generating thousands of lines is one loop over positions
whose step, for all lines at once, is a few numpy gathers.

A second automaton holds the counts over reversed lines. It lets a candidate grow outward from a
word of the conversation: backward to a line start, then forward to a line end, so the word sits
anywhere in the line rather than only at its start. Pieces are kept apart by the alphabet of their
line (a Russian "," is not an English ","), so a line never switches language.

Saved as `markov.safetensors` (the arrays) plus `vocab.json` and `meta.json`; no pickle.
"""
from __future__ import annotations

import json
import re
from collections import Counter, deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property
from itertools import chain
from pathlib import Path

import numpy as np

from src.errors import InputError
from src.generation.markov_table import BOS, EOS, PAD, Table

__all__ = ["BOS", "EOS", "PAD", "Candidates", "MarkovModel", "Table", "join_pieces", "script_of",
           "seed_form", "split_pieces"]

FORMAT_VERSION = 1
RESERVED = ("<pad>", "<s>", "</s>")  # the names of PAD, BOS and EOS
_PIECE = re.compile(r" ?(?:\w+(?:['’-]\w+)*|[^\w\s]+)")
_LETTER = re.compile(r"[^\W\d_]")
_CYRILLIC = re.compile(r"[\u0400-\u04ff]")
_LATIN = re.compile(r"[A-Za-z\u00c0-\u024f]")


def split_pieces(text: str) -> list[str]:
    """Words and punctuation runs of `text`, each with the one space before it (if any)."""
    return _PIECE.findall(" ".join(text.split()))


def join_pieces(pieces: Iterable[str]) -> str:
    return "".join(pieces).strip()


def script_of(text: str) -> str:
    """cyrillic, latin, or other: which alphabet most of the line's letters are in."""
    cyrillic, latin = len(_CYRILLIC.findall(text)), len(_LATIN.findall(text))
    return "cyrillic" if cyrillic > latin else "latin" if latin else "other"


def seed_form(piece: str) -> str | None:
    """The form a conversation word is matched by (lower case, no space); None for punctuation
    and numbers, which make poor seeds."""
    word = piece.strip().lower()
    return word if _LETTER.search(word) else None


@dataclass
class Candidates:
    texts: list[str]
    seeds: list[str | None]  # the conversation word each line grew from; None: from a line start


class MarkovModel:
    """Forward and backward tables over one vocabulary of pieces."""

    def __init__(self, vocab: list[str], forward: Table, backward: Table, meta: dict) -> None:
        self.vocab = vocab
        self.forward, self.backward = forward, backward
        self.order = forward.order
        self.min_choices = int(meta["min_choices"])
        self.meta = meta
        # every piece's text (PAD and BOS empty, EOS a newline), for _decode's one join
        self._strings = np.array(["", "", "\n", *vocab[len(RESERVED):]], dtype=object)
        self._spaced = np.array([p.startswith(" ") for p in self._strings], dtype=bool)
        # the forward state at a line start, where every line that does not grow from a seed begins
        self._line_start = forward.states(np.full((1, self.order), BOS, dtype=np.int32), self.min_choices)
        uni = np.zeros(len(vocab), dtype=np.int64)
        n_uni = forward.state_choices[0]
        uni[forward.next_ids[:n_uni]] = np.diff(forward.cum_end[:n_uni], prepend=0)
        self.unigram = uni
        # seed form -> piece ids spelling it (" Word", "word", ...)
        self.forms: dict[str, list[int]] = {}
        for i, piece in enumerate(vocab):
            form = seed_form(piece) if i >= len(RESERVED) else None
            if form is not None:
                self.forms.setdefault(form, []).append(i)

    @classmethod
    def build(cls, lines: Iterable[str], order: int, min_choices: int = 2,
              meta: dict | None = None) -> MarkovModel:
        """A model of `lines` with keys of up to `order` pieces; a key with fewer than
        `min_choices` distinct continuations gives way to a shorter one (1: plain longest match,
        which mostly copies the corpus once keys are long)."""
        if order < 1 or min_choices < 1:
            raise ValueError(f"order and min_choices must be >= 1, got {order} and {min_choices}")
        # Pieces are told apart by the script of their line, so that "," after a Russian line
        # never leads into an English one: the writer keeps to one language per line.
        index: dict[tuple[str, str], int] = {("", p): i for i, p in enumerate(RESERVED)}
        encoded: list[np.ndarray] = []
        scripts: Counter[str] = Counter()
        for line in lines:
            pieces = split_pieces(line)
            if pieces:
                pieces[0] = pieces[0].lstrip()  # a line's first piece has no space before it
                script = script_of(line)
                scripts[script] += 1
                encoded.append(np.fromiter((index.setdefault((script, p), len(index)) for p in pieces),
                                           np.int32, count=len(pieces)))
        if not encoded:
            raise InputError("markov: no line with a word to learn from")
        vocab = [p for _, p in index]
        meta = {**(meta or {}), "format_version": FORMAT_VERSION, "order": order,
                "min_choices": min_choices, "lines": len(encoded), "lines_by_script": dict(scripts),
                "pieces": int(sum(len(e) for e in encoded)), "vocab_size": len(vocab)}
        return cls(vocab, Table.build(encoded, order, min_choices),
                   Table.build([e[::-1] for e in encoded], order, min_choices), meta)

    @cached_property
    def _seed_states(self) -> np.ndarray:
        """The backward state of every piece on its own (where a seeded line's backward walk
        starts), looked up once per model rather than once per call."""
        ctx = np.full((len(self.vocab), self.order), PAD, dtype=np.int32)
        ctx[:, -1] = np.arange(len(self.vocab))
        return self.backward.states(ctx, self.min_choices)

    # --- generation ---------------------------------------------------------------------------
    def seeds(self, context: Sequence[str], seed_lines: int) -> tuple[list[str], np.ndarray]:
        """Words of the last `seed_lines` context lines the model knows, and their weights
        (rarer words weigh more: they say more about what the line is about)."""
        words: dict[str, float] = {}
        for line in list(context)[-seed_lines:] if seed_lines else []:
            for piece in split_pieces(line):
                form = seed_form(piece)
                if form in self.forms and form not in words:
                    words[form] = 1.0 / np.sqrt(self.unigram[self.forms[form]].sum())
        return list(words), np.asarray(list(words.values()), dtype=np.float64)

    def generate(self, n: int, context: Sequence[str] = (), *, seed: int | None = None,
                 seeded_share: float = 0.5, seed_lines: int = 1, max_pieces: int = 40,
                 rounds: int = 4) -> Candidates:
        """Up to `n` distinct lines; `seeded_share` of them grown from words of the last
        `seed_lines` context lines (when the model knows any), the rest from line starts. Lines that
        hit `max_pieces` before ending are thrown away; a round that leaves the set short of `n`
        (repeats, unfinished lines) is followed by another, at most `rounds` in all."""
        rng = np.random.default_rng(seed)
        words, weights = self.seeds(context, seed_lines)
        found: dict[str, str | None] = {}
        rows = n + 2 * n // 5  # room for repeats and lines cut at max_pieces: one round mostly does
        for _ in range(rounds):
            n_seeded = int(round(rows * seeded_share)) if words else 0
            flat, seeds = self._walk_lines(n_seeded, rows - n_seeded, words, weights, rng, max_pieces)
            before = len(found)
            # Decoded in order, a chunk at a time, only until n distinct lines are found: the spare
            # rows are there for the rounds that need them, decoding is the largest single cost.
            ends = np.flatnonzero(flat == EOS) + 1
            done = 0
            while done < len(ends) and len(found) < n:
                upto = min(len(ends), done + (n - len(found)) * 21 // 20 + 16)
                chunk = flat[ends[done - 1] if done else 0:ends[upto - 1]]
                # the first line of each text wins, in order (setdefault driven by deque: a C loop)
                deque(map(found.setdefault, self._decode(chunk), seeds[done:upto]), maxlen=0)
                found.pop("", None)
                done = upto
            if len(found) >= n:
                return Candidates(list(found)[:n], list(found.values())[:n])
            # the next round sized by this one's yield of new lines
            rows = int((n - len(found)) * 1.2 * rows / max(len(found) - before, rows / 20)) + 16
        return Candidates(list(found), list(found.values()))

    def texts(self, pieces: np.ndarray) -> list[str]:
        """The lines of `pieces` ([B, L] ids, EOS at and after each line's end; PAD skipped)."""
        if len(pieces) == 0:
            return []
        is_end = pieces == EOS
        if not is_end.any(axis=1).all():
            raise ValueError("texts() takes finished lines only (an EOS in every row)")
        keep = (np.arange(pieces.shape[1]) <= is_end.argmax(axis=1)[:, None]) & (pieces != PAD)
        return self._decode(pieces[keep])

    def _decode(self, flat: np.ndarray) -> list[str]:
        """The lines of `flat` (piece ids, each line ended by EOS), all decoded at once: the pieces'
        strings joined with a newline per line end (EOS spells one), then split."""
        if len(flat) == 0:
            return []
        lines = "".join(self._strings.take(flat).tolist()).split("\n")
        lines.pop()  # after the last line end
        # only a line that begins with a spaced piece needs stripping (a seed at the line start)
        return list(map(str.strip, lines)) if self._spaced.take(flat[1:][flat[:-1] == EOS]).any() \
            or self._spaced[flat[0]] else lines

    def _walk_lines(self, n_seeded: int, n_start: int, words: list[str], weights: np.ndarray,
                    rng: np.random.Generator, max_pieces: int) -> tuple[np.ndarray, list[str | None]]:
        """The pieces of up to `n_seeded` lines grown from `words` and `n_start` from line starts,
        each line ended by EOS, and the word each grew from (None: a line start). The forward walks
        of both kinds run as one (a walk's cost is mostly per step, not per row)."""
        back, back_len, back_col, start, which, first = self._grow_back(n_seeded, words, weights, rng,
                                                                        max_pieces)
        fwd, fwd_len = self.forward.walk_steps(np.concatenate([first, np.repeat(self._line_start, n_start)]),
                                               max_pieces, rng)
        k = len(start)
        done = np.flatnonzero(fwd_len >= 0)  # unfinished lines are dropped here
        seeded, from_start = done[done < k], done[done >= k]
        # Each line is read off the walks' step-major outputs, one buffer holding both walks and the
        # seeds, as segments of evenly spaced ids: (for a seeded line) its backward pieces from the
        # farthest back to the nearest, its seed, then its forward pieces up to EOS.
        rows_b, rows_f = back.shape[1], fwd.shape[1]
        at_start, at_fwd = back.size, back.size + k
        lb = back_len[seeded]
        begin = np.concatenate([np.stack([(lb - 1) * rows_b + back_col[seeded], at_start + seeded,
                                          at_fwd + seeded], axis=1).ravel(), at_fwd + from_start])
        stride = np.concatenate([np.tile(np.array([-rows_b, 1, rows_f]), len(seeded)),
                                 np.full(len(from_start), rows_f)])
        count = np.concatenate([np.stack([lb, np.ones_like(lb), fwd_len[seeded] + 1], axis=1).ravel(),
                                fwd_len[from_start] + 1])
        buffer = np.concatenate([back.ravel(), start, fwd.ravel()])
        flat = buffer.take(_spans(begin, stride, count))
        # the word of each line; words[len(words)] is None (a line start)
        labels = np.array([*words, None], dtype=object)
        return flat, labels.take(np.concatenate([which[seeded], np.full(len(from_start), len(words))])).tolist()

    def _grow_back(self, rows: int, words: list[str], weights: np.ndarray, rng: np.random.Generator,
                   max_pieces: int) -> tuple[np.ndarray, ...]:
        """Seeds for `rows` lines and the walks from each back to a line start. Returns the backward
        walk's pieces (step-major, [max_pieces, rows], nearest the seed first), and for the rows
        that reached a line start (the others are dropped): their number of backward pieces, their
        column in the walk, the seed piece, the index of its word and the forward state after it."""
        if rows <= 0 or not words:
            none = np.zeros(0, np.int64)
            return np.zeros((max_pieces, 0), np.int32), none, none, none.astype(np.int32), none, none
        # a word by its weight, then one of its spellings as often as the corpus uses it: one draw
        # over all the words' spellings, P(word) x P(spelling | word)
        counts = [len(self.forms[w]) for w in words]
        ids = np.fromiter(chain.from_iterable(self.forms[w] for w in words), np.int64, count=sum(counts))
        word_of = np.repeat(np.arange(len(words)), counts)
        uses = self.unigram[ids].astype(np.float64)
        share = (weights / weights.sum())[word_of] * uses / np.bincount(word_of, weights=uses)[word_of]
        pick = rng.choice(len(ids), size=rows, p=share / share.sum())
        start, which = ids[pick].astype(np.int32), word_of[pick]
        # the backward walk starts from the seed alone
        back, back_len = self.backward.walk_steps(self._seed_states.take(start), max_pieces, rng)
        col = np.flatnonzero(back_len >= 0)  # a line whose start was not reached needs no forward walk
        back_len, start, which = back_len[col], start[col], which[col]
        # the forward key: line start padding, the backward pieces in reading order, the seed
        fwd_ctx = np.full((len(start), self.order), BOS, dtype=np.int32)
        fwd_ctx[:, -1] = start
        for j in range(1, min(self.order, max_pieces + 1)):  # back[j-1]: the jth piece before the seed
            fwd_ctx[:, -1 - j] = np.where(j - 1 < back_len, back[j - 1, col], BOS)
        return back, back_len, col, start, which, self.forward.states(fwd_ctx, self.min_choices)

    # --- artifact ------------------------------------------------------------------------------
    def save(self, out_dir: str | Path) -> None:
        from safetensors.numpy import save_file

        from src.atomic_io import atomic_path, write_json_atomic

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        tensors = {f"forward.{k}": v for k, v in self.forward.arrays().items()}
        tensors |= {f"backward.{k}": v for k, v in self.backward.arrays().items()}
        with atomic_path(out / "markov.safetensors") as tmp:
            save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, str(tmp))
        write_json_atomic(out / "vocab.json", self.vocab, indent=None)
        write_json_atomic(out / "meta.json", self.meta)

    @classmethod
    def load(cls, path: str | Path) -> MarkovModel:
        """A saved model: its directory (or any file in it)."""
        from safetensors import SafetensorError
        from safetensors.numpy import load_file

        root = Path(path)
        root = root.parent if root.is_file() else root
        files = [root / "markov.safetensors", root / "vocab.json", root / "meta.json"]
        missing = [f.name for f in files if not f.is_file()]
        if missing:
            raise InputError(f"{root}: not a Markov model ({', '.join(missing)} missing; "
                             "build one with the markov stage)")
        try:
            meta = json.loads(files[2].read_text(encoding="utf-8"))
            vocab = json.loads(files[1].read_text(encoding="utf-8"))
            tensors = load_file(str(files[0]))
        except (OSError, ValueError, SafetensorError) as exc:
            raise InputError(f"{root}: unreadable Markov model ({exc})") from None
        if meta.get("format_version") != FORMAT_VERSION:
            raise InputError(f"{files[2]}: format_version {meta.get('format_version')!r}, this code "
                             f"reads {FORMAT_VERSION}; rebuild it with the markov stage")
        order = int(meta["order"])
        try:
            tables = [Table({k.split(".", 1)[1]: v for k, v in tensors.items() if k.startswith(f"{d}.")},
                            order) for d in ("forward", "backward")]
        except KeyError as exc:
            raise InputError(f"{files[0]}: array {exc} missing; rebuild it with the markov stage") from None
        return cls(vocab, tables[0], tables[1], meta)


def _spans(begin: np.ndarray, stride: np.ndarray, count: np.ndarray) -> np.ndarray:
    """The positions begin[i], begin[i] + stride[i], ... (count[i] of them) for every i, one after
    another: a cumulative sum of the strides, with a jump written in where each span starts."""
    some = count > 0  # an empty span has no first position to write its jump at
    begin, stride, count = begin[some], stride[some], count[some]
    if len(count) == 0:
        return np.zeros(0, dtype=np.int64)
    step = np.repeat(stride, count)
    first = np.cumsum(count) - count
    step[first[1:]] = begin[1:] - (begin[:-1] + stride[:-1] * (count[:-1] - 1))
    step[0] = begin[0]
    return np.cumsum(step)
