"""Samples for the next-line reranker: (context lines, candidate line, label) cut from runs of dialogue.

A run is a list of consecutive lines taken to follow one another (one scene of one subtitle file,
one stretch of direct speech in a work). Each run is cut, left to right, into non-overlapping
fragments, and each fragment becomes exactly one sample of one kind:

- positive     n + 1 lines: the first n are the context, the last one the candidate (label 1);
- swap         n + 1 lines with the first and the last exchanged: context [w_n, w_1 .. w_n-1],
               candidate w_0, which is out of place (label 0; for n = 1 the pair read backwards);
- two_ahead    n + 2 lines: the context, then the line after the next one (label 0); the skipped
               line is used by no other sample;
- other_file   n + 1 lines: the context, and as candidate the last line of another other_file
               fragment from a different file or work of the same split and language (label 0);
               the fragment's own last line is handed on the same way, so no line is used twice.
- markov       n + 1 lines: the context, and as candidate a line made by a Markov writer learned
               from the train split's lines of the fragment's language, grown from the context's
               words where it can (label 0; `markov_negatives.py`); the real next line is used by
               no other sample.

Since every line belongs to at most one fragment, no two samples share content and a fragment used
as a positive is never seen as a negative. The kind of each fragment follows the configured weights
(the kind furthest below its share is taken next), and its context length n is the length, among
those that still fit in the run, that the kind has produced least so far: lengths 1 .. max_lines
come out evenly as far as the runs are long enough, for every kind alike (so length tells nothing
about the label). Lines left over at the end of a run (too few for a fragment) are counted.
"""

from __future__ import annotations

import hashlib
import random
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

SEPARATOR = " | "
KINDS = ("positive", "swap", "two_ahead", "other_file", "markov")
LABELS = {"positive": 1, "swap": 0, "two_ahead": 0, "other_file": 0, "markov": 0}
# Lines a fragment of n context lines takes from its run.
EXTRA_LINES = {"positive": 1, "swap": 1, "two_ahead": 2, "other_file": 1, "markov": 1}


def join_context(lines: Sequence[str]) -> str:
    """Context lines as the model reads them."""
    return SEPARATOR.join(lines)


@dataclass(frozen=True)
class Run:
    source: str  # subtitles | literature
    group: str  # file or work id: the unit the split keeps together
    language: str
    lines: list[str]


@dataclass
class Sample:
    context: list[str]
    candidate: str
    kind: str
    source: str
    file_id: str
    language: str
    split: str
    candidate_file_id: str

    @property
    def label(self) -> int:
        return LABELS[self.kind]

    @property
    def n_lines(self) -> int:
        return len(self.context)


@dataclass
class BuildCounts:
    runs: Counter[str] = field(default_factory=Counter)  # per source
    lines_used: Counter[str] = field(default_factory=Counter)
    lines_unused: Counter[str] = field(default_factory=Counter)  # reason -> lines
    other_file_to_swap: int = 0  # other_file fragments with no donor of another file
    # markov: fragments made swap (reason -> n), generated lines dropped as copies of a corpus line,
    # and the lines each language's writer learned from
    markov_to_swap: Counter[str] = field(default_factory=Counter)
    markov_copies_dropped: int = 0
    markov_model_lines: dict[str, int] = field(default_factory=dict)


def split_of_groups(groups: Mapping[str, Iterable[str]], val_share: float, salt: str) -> dict[str, str]:
    """train/val for every group, per source: the groups of lowest hash score go to val, at least
    one when the source has two or more (so each source is validated), never all of them."""
    out: dict[str, str] = {}
    for source, names in groups.items():
        ranked = sorted(set(names), key=lambda g: hashlib.sha256(f"{salt}{source}:{g}".encode()).hexdigest())
        n_val = round(val_share * len(ranked)) if val_share > 0 else 0
        if val_share > 0 and len(ranked) >= 2:
            n_val = min(max(1, n_val), len(ranked) - 1)
        for i, g in enumerate(ranked):
            out[f"{source}:{g}"] = "val" if i < n_val else "train"
    return out


class SampleBuilder:
    def __init__(self, weights: Mapping[str, float], max_lines: int, seed: int) -> None:
        unknown = sorted(set(weights) - set(KINDS))
        if unknown:
            raise ValueError(f"unknown sample kind(s) {unknown}; known: {list(KINDS)}")
        self.weights = {k: float(w) for k, w in weights.items() if w > 0}
        if "positive" not in self.weights:
            raise ValueError("the positive kind needs a weight > 0")
        self.max_lines = max_lines
        self.rng = random.Random(seed)
        self.kind_counts: Counter[str] = Counter()
        self.length_counts: dict[str, Counter[int]] = defaultdict(Counter)
        self.counts = BuildCounts()
        self._pending_other: list[tuple[Sample, str]] = []  # (sample, its own last line)
        self.pending_markov: list[tuple[Sample, str]] = []

    def _next_kind(self, room: int) -> str | None:
        total = sum(self.kind_counts.values()) + 1
        fitting = [k for k in self.weights if room >= 1 + EXTRA_LINES[k]]
        if not fitting:
            return None
        share = sum(self.weights[k] for k in self.weights)
        # the kind furthest below its target count; ties in KINDS order
        return min(fitting, key=lambda k: (self.kind_counts[k] - total * self.weights[k] / share,
                                           KINDS.index(k)))

    def _next_length(self, kind: str, room: int) -> int:
        longest = min(self.max_lines, room - EXTRA_LINES[kind])
        counts = self.length_counts[kind]
        fewest = min(counts[n] for n in range(1, longest + 1))
        return self.rng.choice([n for n in range(1, longest + 1) if counts[n] == fewest])

    def add_run(self, run: Run, split: str) -> list[Sample]:
        """The samples of one run (other_file ones get their candidate in `finish`)."""
        self.counts.runs[run.source] += 1
        out: list[Sample] = []
        lines, i = run.lines, 0
        while True:
            room = len(lines) - i
            kind = self._next_kind(room)
            if kind is None:
                break
            n = self._next_length(kind, room)
            take = n + EXTRA_LINES[kind]
            frag = lines[i:i + take]
            i += take
            self.kind_counts[kind] += 1
            self.length_counts[kind][n] += 1
            self.counts.lines_used[run.source] += take
            sample = Sample(frag[:n], frag[n], kind, run.source, run.group, run.language, split, run.group)
            if kind == "swap":
                sample.context = [frag[-1], *frag[1:n]]
                sample.candidate = frag[0]
            elif kind == "two_ahead":
                sample.candidate = frag[n + 1]
            elif kind == "other_file":
                self._pending_other.append((sample, frag[n]))
                continue
            elif kind == "markov":
                self.pending_markov.append((sample, frag[n]))
                continue
            out.append(sample)
        if room := len(lines) - i:
            self.counts.lines_unused["run_end_too_short"] += room
        return out

    def finish(self) -> list[Sample]:
        """The other_file samples, each with the held-back line of a fragment from another file of
        its split and language (a rotation of the fragments sorted by file, by the largest file's
        count, never lands in the same file when that file holds at most half of them; the surplus
        of a bigger file becomes swap samples)."""
        out: list[Sample] = []
        by_pool: dict[tuple[str, str], list[tuple[Sample, str]]] = defaultdict(list)
        for sample, line in self._pending_other:
            by_pool[(sample.split, sample.language)].append((sample, line))
        self._pending_other = []
        for pool in by_pool.values():
            per_file = Counter(s.file_id for s, _ in pool)
            biggest, m = per_file.most_common(1)[0]
            surplus = max(0, 2 * m - len(pool))
            if surplus:
                kept = []
                for sample, line in pool:
                    if surplus and sample.file_id == biggest:
                        surplus -= 1
                        self.counts.other_file_to_swap += 1
                        out.append(self.as_swap(sample, line))
                    else:
                        kept.append((sample, line))
                pool = kept
            if not pool:
                continue
            pool.sort(key=lambda item: item[0].file_id)
            shift = Counter(s.file_id for s, _ in pool).most_common(1)[0][1]
            for j, (sample, _) in enumerate(pool):
                donor, line = pool[(j + shift) % len(pool)]
                assert donor.file_id != sample.file_id
                sample.candidate, sample.candidate_file_id = line, donor.file_id
                out.append(sample)
        return out

    def as_swap(self, sample: Sample, own_last: str) -> Sample:
        """An other_file or markov fragment that found no candidate, made a swap sample of its own
        lines."""
        n = sample.n_lines
        self.kind_counts[sample.kind] -= 1
        self.length_counts[sample.kind][n] -= 1
        self.kind_counts["swap"] += 1
        self.length_counts["swap"][n] += 1
        lines = [*sample.context, own_last]
        sample.kind = "swap"
        sample.context = [lines[-1], *lines[1:n]]
        sample.candidate = lines[0]
        return sample


# (builder, runs, split of each "source:group") -> the builder's pending markov fragments, finished
FinishMarkov = Callable[["SampleBuilder", list[Run], dict[str, str]], list[Sample]]


def build_samples(runs: Iterable[Run], weights: Mapping[str, float], max_lines: int, val_share: float,
                  seed: int, salt: str = "", finish_markov: FinishMarkov | None = None,
                  ) -> tuple[list[Sample], BuildCounts]:
    """Every sample of `runs` (see the module docstring), with the split of its file or work.
    markov fragments get their candidates from `finish_markov` (markov_negatives.build_samples
    passes the writer; this module stays free of it, since the reranker's scoring imports it)."""

    runs = list(runs)
    groups: dict[str, list[str]] = defaultdict(list)
    for run in runs:
        groups[run.source].append(run.group)
    splits = split_of_groups(groups, val_share, salt)
    builder = SampleBuilder(weights, max_lines, seed)
    samples: list[Sample] = []
    for run in runs:
        samples.extend(builder.add_run(run, splits[f"{run.source}:{run.group}"]))
    samples.extend(builder.finish())
    if builder.pending_markov:
        if finish_markov is None:
            raise ValueError("markov samples need a writer: use src.data.reranker.markov_negatives.build_samples")
        samples.extend(finish_markov(builder, runs, splits))
    return samples, builder.counts
