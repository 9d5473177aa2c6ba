"""Reranker samples: the swap, even context lengths, no content reuse, the split by file or work."""

from __future__ import annotations

from collections import Counter

import pytest

from src.data.reranker.markov_negatives import MarkovOptions, build_samples, train_lines
from src.data.reranker.samples import Run, split_of_groups
from src.data.reranker.samples import build_samples as build_samples_without_markov


def corpus(n_files: int = 12, runs_per_file: int = 6, run_len: int = 40) -> list[Run]:
    """Runs whose lines are unique and say where they come from: f{file}r{run}l{line}."""
    return [Run("subtitles", f"f{f:02d}", "en", [f"f{f:02d}r{r}l{i:02d}" for i in range(run_len)])
            for f in range(n_files) for r in range(runs_per_file)]


def position(line: str) -> tuple[str, int, int]:
    f, rest = line.split("r")
    r, i = rest.split("l")
    return f, int(r), int(i)


WEIGHTS = {"positive": 1.0, "swap": 0.5, "two_ahead": 0.25, "other_file": 0.25}


def test_positive_is_the_real_next_line_and_swap_exchanges_first_and_last():
    samples, _ = build_samples(corpus(), WEIGHTS, 6, 0.25, seed=1)
    kinds = Counter(s.kind for s in samples)
    assert kinds["positive"] and kinds["swap"]
    for s in samples:
        pos = [position(x) for x in s.context]
        cand = position(s.candidate)
        if s.kind == "positive":
            assert s.label == 1
            # consecutive lines of one run, candidate right after the last context line
            assert all(p[:2] == cand[:2] for p in pos)
            assert [p[2] for p in pos] + [cand[2]] == list(range(pos[0][2], pos[0][2] + s.n_lines + 1))
        elif s.kind == "swap":
            assert s.label == 0
            first = cand[2]  # the window's first line became the candidate
            n = s.n_lines
            assert pos[0][2] == first + n  # ... and its last line opens the context
            assert [p[2] for p in pos[1:]] == list(range(first + 1, first + n))
        elif s.kind == "two_ahead":
            assert s.label == 0 and cand[2] == pos[-1][2] + 2
        elif s.kind == "other_file":
            assert s.label == 0 and cand[0] != pos[0][0] == s.file_id
            assert s.candidate_file_id == cand[0]


def test_one_line_swap_is_the_pair_read_backwards():
    samples, _ = build_samples([Run("subtitles", "a", "en", ["A0", "A1"]), Run("subtitles", "b", "en", ["B0", "B1"])],
                               {"positive": 1.0, "swap": 1.0}, 1, 0.0, seed=0)
    by_kind = {s.kind: s for s in samples}
    assert by_kind["positive"].context == ["A0"] and by_kind["positive"].candidate == "A1"
    assert by_kind["swap"].context == ["B1"] and by_kind["swap"].candidate == "B0"


def test_context_lengths_are_even_for_every_kind():
    samples, _ = build_samples(corpus(), WEIGHTS, 6, 0.25, seed=3)
    for kind in WEIGHTS:
        lengths = Counter(s.n_lines for s in samples if s.kind == kind)
        assert sorted(lengths) == [1, 2, 3, 4, 5, 6], kind
        # a run's end may force a shorter length now and then: within two of each other
        assert max(lengths.values()) - min(lengths.values()) <= 2, (kind, lengths)


def test_lengths_even_as_far_as_short_runs_allow():
    # runs of 3 lines can only hold contexts of 1 or 2 lines; long runs make up the longer lengths
    runs = corpus(6, 10, 3) + corpus(6, 2, 60)
    runs = [Run(r.source, r.group + str(i), r.language, r.lines) for i, r in enumerate(runs)]
    samples, _ = build_samples(runs, {"positive": 1.0, "swap": 1.0}, 4, 0.0, seed=0)
    lengths = Counter(s.n_lines for s in samples if s.kind == "positive")
    assert set(lengths) == {1, 2, 3, 4}
    assert max(lengths.values()) <= 2 * min(lengths.values()), lengths


def test_no_line_is_used_twice_and_unused_lines_are_counted():
    runs = corpus(8, 5, 23)
    samples, counts = build_samples(runs, WEIGHTS, 6, 0.25, seed=2)
    used = Counter(line for s in samples for line in [*s.context, s.candidate])
    assert max(used.values()) == 1
    two_ahead_skipped = sum(1 for s in samples if s.kind == "two_ahead")
    total = sum(len(r.lines) for r in runs)
    assert len(used) + two_ahead_skipped + sum(counts.lines_unused.values()) == total
    assert sum(counts.lines_used.values()) == len(used) + two_ahead_skipped


def test_split_keeps_each_file_in_one_split():
    samples, _ = build_samples(corpus(), WEIGHTS, 6, 0.25, seed=0)
    splits: dict[str, set[str]] = {}
    for s in samples:
        splits.setdefault(s.file_id, set()).add(s.split)
        splits.setdefault(s.candidate_file_id, set()).add(s.split)
    assert all(len(v) == 1 for v in splits.values())
    n_val = sum(1 for v in splits.values() if v == {"val"})
    assert n_val == 3  # a quarter of 12 files


def test_split_holds_out_at_least_one_group_per_source_and_never_all():
    split = split_of_groups({"subtitles": ["a", "b"], "literature": ["x"]}, 0.01, "")
    assert sorted(split[k] for k in ("subtitles:a", "subtitles:b")) == ["train", "val"]
    assert split["literature:x"] == "train"
    assert set(split_of_groups({"s": ["a", "b", "c"]}, 0.0, "").values()) == {"train"}


def test_other_file_without_another_file_becomes_swap():
    runs = [Run("subtitles", "only", "en", [f"l{i}" for i in range(30)])]
    samples, counts = build_samples(runs, {"positive": 1.0, "other_file": 1.0}, 3, 0.0, seed=0)
    assert not [s for s in samples if s.kind == "other_file"]
    assert counts.other_file_to_swap == sum(1 for s in samples if s.kind == "swap") > 0


def test_markov_kind_needs_the_writer():
    with pytest.raises(ValueError, match="markov samples need a writer"):
        build_samples_without_markov(corpus(2, 1, 10), {"positive": 1.0, "markov": 1.0}, 2, 0.0, seed=0)


def test_unknown_kind_is_refused():
    with pytest.raises(ValueError, match="unknown sample kind"):
        build_samples(corpus(2, 1, 5), {"positive": 1.0, "bogus": 1.0}, 3, 0.0, seed=0)


# --- markov negatives ----------------------------------------------------------------------------
SUBJECTS = ["the cat", "a dog", "my friend", "the old man", "her sister", "our teacher", "the baker", "a sailor"]
VERBS = ["saw", "liked", "found", "painted", "forgot", "carried", "sold", "wanted"]
OBJECTS = ["the red door", "a small boat", "the letter", "his garden", "the bright moon", "a warm coat",
           "the last train", "an apple"]


def sentences(offset: int, count: int, words: tuple[list[str], list[str], list[str]]) -> list[str]:
    """Distinct sentences that share words (a spread of the 512 subject-verb-object triples), so a
    Markov writer can recombine them into lines of no file."""
    subj, verb, obj = words
    triples = [(k * 97) % 512 for k in range(offset, offset + count)]
    return [f"{subj[t % 8].capitalize()} {verb[t // 8 % 8]} {obj[t // 64]}." for t in triples]


VAL_WORDS = ([f"zeta{i}" for i in range(8)], [f"zapped{i}" for i in range(8)], [f"zulu{i}" for i in range(8)])


def markov_runs() -> list[Run]:
    # files f00..f07: distinct sentences over one vocabulary; with val_share 0.25 two files go to
    # val, and those are rewritten below with words no train file has
    runs = [Run("subtitles", f"f{f:02d}", "en", sentences(27 * f, 27, (SUBJECTS, VERBS, OBJECTS)))
            for f in range(8)]
    splits = split_of_groups({"subtitles": [r.group for r in runs]}, 0.25, "")
    return [Run(r.source, r.group, r.language, sentences(27 * i, 27, VAL_WORDS))
            if splits[f"subtitles:{r.group}"] == "val" else r for i, r in enumerate(runs)]


MARKOV_WEIGHTS = {"positive": 1.0, "swap": 0.5, "markov": 0.5}


def test_markov_candidates_are_made_lines_from_train_words_only() -> None:
    runs = markov_runs()
    samples, counts = build_samples(runs, MARKOV_WEIGHTS, 3, 0.25, seed=0)
    corpus = {line for r in runs for line in r.lines}
    markov = [s for s in samples if s.kind == "markov"]
    assert len(markov) >= 10 and {s.label for s in markov} == {0}
    assert {s.split for s in markov} == {"train", "val"}
    val_words = {w.strip(".").lower() for r in runs if r.lines[0].startswith("Zeta") for line in r.lines
                 for w in line.split()}
    for s in markov:
        assert s.candidate not in corpus and s.candidate_file_id == "markov"
        # built from train lines only: no word of a validation file appears, in either split
        assert not {w.strip(".").lower() for w in s.candidate.split()} & val_words, s.candidate
    assert counts.markov_model_lines == {"en": 6 * 27}
    # the train-lines helper is what the writer learns from
    splits = {f"subtitles:{r.group}": ("val" if r.lines[0].startswith("Zeta") else "train") for r in runs}
    assert len(train_lines(runs, splits, "en")) == 6 * 27 and not train_lines(runs, splits, "ru")


def test_markov_samples_are_deterministic_and_use_no_line_twice() -> None:
    runs = markov_runs()
    a, _ = build_samples(runs, MARKOV_WEIGHTS, 3, 0.25, seed=4)
    b, _ = build_samples(runs, MARKOV_WEIGHTS, 3, 0.25, seed=4)
    c, _ = build_samples(runs, MARKOV_WEIGHTS, 3, 0.25, seed=5)
    assert [(s.context, s.candidate, s.kind) for s in a] == [(s.context, s.candidate, s.kind) for s in b]
    assert [s.candidate for s in a if s.kind == "markov"] != [s.candidate for s in c if s.kind == "markov"]
    # corpus lines: each in at most one sample (a markov fragment's real next line in none)
    corpus = {line for r in runs for line in r.lines}
    used = Counter(line for s in a for line in [*s.context, s.candidate] if line in corpus)
    assert max(used.values()) == 1
    assert Counter(s.kind for s in a)["markov"] > 0


def test_markov_copies_are_dropped_and_counted() -> None:
    # one template line per file, varied by a number only: min_choices=1 with long keys copies
    runs = [Run("subtitles", f"f{f}", "en", [f"We met at {i} o'clock." for i in range(10 * f, 10 * f + 10)])
            for f in range(4)]
    samples, counts = build_samples(runs, {"positive": 1.0, "markov": 1.0}, 2, 0.0, seed=0,
                                    markov=MarkovOptions(order=6, min_choices=1, tries=3))
    made_swap = counts.markov_to_swap["only_copies"]
    assert counts.markov_copies_dropped >= made_swap * 1 > 0
    assert sum(1 for s in samples if s.kind == "swap") == made_swap
    assert all(s.candidate not in {x for r in runs for x in r.lines} for s in samples if s.kind == "markov")


def test_markov_without_train_lines_of_the_language_becomes_swap() -> None:
    # two works: an English one in train, a Russian one in val, so no Russian line is in train
    names = next((en, ru) for en, ru in (("w", f"v{i}") for i in range(50))
                 if split_of_groups({"literature": [en, ru]}, 0.5, "")[f"literature:{ru}"] == "val")
    runs = [Run("literature", names[0], "en", sentences(0, 30, (SUBJECTS, VERBS, OBJECTS))),
            Run("literature", names[1], "ru", [f"Строка номер {i}." for i in range(30)])]
    samples, counts = build_samples(runs, {"positive": 1.0, "markov": 1.0}, 2, 0.5, seed=0)
    ru = [s for s in samples if s.language == "ru"]
    assert ru and {s.split for s in ru} == {"val"} and not [s for s in ru if s.kind == "markov"]
    assert counts.markov_to_swap["no_train_lines"] == sum(1 for s in ru if s.kind == "swap") > 0
    assert counts.markov_model_lines == {"en": 30, "ru": 0}


def test_default_kinds_keep_the_labels_balanced() -> None:
    from src.config.sections.reranker_data import RerankerDataConfig

    runs = markov_runs()
    samples, _ = build_samples(runs, RerankerDataConfig().kinds, 3, 0.25, seed=0)
    labels = Counter(s.label for s in samples)
    assert abs(labels[1] - labels[0]) <= 0.05 * len(samples)
    assert Counter(s.kind for s in samples)["markov"] > 0
