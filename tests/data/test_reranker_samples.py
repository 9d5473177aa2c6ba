"""Reranker samples: the swap, even context lengths, no content reuse, the split by file or work."""

from __future__ import annotations

from collections import Counter

import pytest

from src.data.reranker.samples import Run, build_samples, split_of_groups


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


def test_unknown_kind_is_refused():
    with pytest.raises(ValueError, match="unknown sample kind"):
        build_samples(corpus(2, 1, 5), {"positive": 1.0, "markov": 1.0}, 3, 0.0, seed=0)
