"""Markov negatives for the reranker: a made-up line where the real next line was.

For each language, one Markov writer (src/generation/markov.py) is learned from the lines of the
train split's runs only, so no validation line can come back as part of a negative. Each pending
`markov` fragment asks it for `tries` distinct lines grown from the words of its last context
lines (from line starts when the writer knows none of them) and takes the first that is not a line
of the corpus (of any split): a copied line would be a real line, labelled 0. Copies passed over
are counted; a fragment with no usable line, or whose language has no train lines, becomes a swap
sample of its own lines (counted by reason), as an other_file fragment without a donor does.

Deterministic: the writers are built from the runs in order and every fragment's generation seed
comes from the builder's random stream.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from src.data.reranker import samples as plain
from src.data.reranker.samples import BuildCounts, Run, Sample, SampleBuilder
from src.errors import InputError

CANDIDATE_FILE_ID = "markov"  # candidate_file_id of a markov sample: no file, a writer


@dataclass(frozen=True)
class MarkovOptions:
    order: int = 3
    min_choices: int = 2
    # lines asked for per fragment; the first that copies no corpus line is the candidate
    tries: int = 8
    seed_lines: int = 1
    max_pieces: int = 40


def normal(line: str) -> str:
    """A line as the writer spells it (its pieces joined: single spaces, no edges)."""
    return " ".join(line.split())


def train_lines(runs: Sequence[Run], splits: Mapping[str, str], language: str) -> list[str]:
    return [line for run in runs if run.language == language and splits[f"{run.source}:{run.group}"] == "train"
            for line in run.lines]


def markov_samples(builder: SampleBuilder, runs: Sequence[Run], splits: Mapping[str, str],
                   options: MarkovOptions) -> list[Sample]:
    """The builder's pending markov fragments, each given its Markov candidate (or made swap)."""
    from src.generation.markov import MarkovModel

    counts = builder.counts
    pending: dict[str, list[tuple[Sample, str]]] = defaultdict(list)
    for sample, own_last in builder.pending_markov:
        pending[sample.language].append((sample, own_last))
    builder.pending_markov = []
    corpus = {normal(line) for run in runs for line in run.lines}
    out: list[Sample] = []
    for language in sorted(pending):
        try:
            model = MarkovModel.build(train_lines(runs, splits, language), options.order, options.min_choices)
            counts.markov_model_lines[language] = int(model.meta["lines"])
        except InputError:  # no train line of this language with a word in it
            model = None
            counts.markov_model_lines[language] = 0
        for sample, own_last in pending[language]:
            candidate = None
            if model is not None:
                made = model.generate(options.tries, sample.context, seed=builder.rng.getrandbits(63),
                                      seeded_share=1.0, seed_lines=options.seed_lines,
                                      max_pieces=options.max_pieces)
                for text in made.texts:
                    if text not in corpus:
                        candidate = text
                        break
                    counts.markov_copies_dropped += 1
            if candidate is None:
                counts.markov_to_swap["no_train_lines" if model is None else "only_copies"] += 1
                out.append(builder.as_swap(sample, own_last))
                continue
            sample.candidate, sample.candidate_file_id = candidate, CANDIDATE_FILE_ID
            out.append(sample)
    return out


def build_samples(runs: Iterable[Run], weights: Mapping[str, float], max_lines: int, val_share: float,
                  seed: int, salt: str = "", markov: MarkovOptions | None = None,
                  ) -> tuple[list[Sample], BuildCounts]:
    """samples.build_samples, with markov fragments finished by writers made with `markov`."""
    options = markov or MarkovOptions()
    return plain.build_samples(runs, weights, max_lines, val_share, seed, salt,
                               lambda builder, runs_, splits: markov_samples(builder, runs_, splits, options))
