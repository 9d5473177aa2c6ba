"""KTO data: the arrangement that makes rotated pairs real mismatches, and reading pairs files."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from src.training.kto_data import (
    EncodedPairs,
    PairsDataError,
    arrange,
    interleave_prompts,
    read_pairs,
)
from tests.training.kto_fixtures import pair_rows, write_pairs


def grouped_pairs(group_sizes: list[int]) -> EncodedPairs:
    """Rows in file order, each prompt's rows side by side (as kto_pairs writes them)."""
    pairs = EncodedPairs()
    for g, size in enumerate(group_sizes):
        for j in range(size):
            pairs.prompts.append([g])
            pairs.completions.append([100 + g, j])
            pairs.labels.append(j == 0)
            pairs.prompt_keys.append(g)
    return pairs


def test_interleaving_keeps_neighbours_apart_and_is_seeded():
    keys = [k for k, n in enumerate([3, 1, 4, 2, 2, 3]) for _ in range(n)]
    order = interleave_prompts(keys, seed=1)
    assert sorted(order) == list(range(len(keys)))
    assert all(keys[a] != keys[b] for a, b in zip(order, order[1:], strict=False))
    assert order == interleave_prompts(keys, seed=1) and order != interleave_prompts(keys, seed=2)


def test_every_rotated_pair_is_a_real_mismatch():
    pairs = grouped_pairs([3, 2, 3, 2, 2, 3, 2, 3])  # 20 rows in micro-batches of 4
    a = arrange(pairs, 4, seed=0)
    assert sorted(i for b in a.batches for i in b) == list(range(len(pairs)))
    assert a.same_prompt_pairs == 0
    for rows in a.batches:
        # prompt i takes the completion of the next row in its micro-batch, the last the first's
        assert [a.partner[i] for i in rows] == rows[1:] + rows[:1]
        assert all(pairs.prompt_keys[i] != pairs.prompt_keys[a.partner[i]] for i in rows)


def test_file_order_would_have_paired_prompts_with_their_own_replies():
    pairs = grouped_pairs([2] * 6)
    in_file_order = [pairs.prompt_keys[i] == pairs.prompt_keys[i + 1] for i in range(0, 12, 2)]
    assert all(in_file_order)  # why the rows are arranged rather than read in order
    assert arrange(pairs, 2, seed=0).same_prompt_pairs == 0


def test_a_last_micro_batch_of_one_joins_the_previous_one_and_unavoidable_matches_are_marked():
    a = arrange(grouped_pairs([1] * 9), 4, seed=0)
    assert [len(b) for b in a.batches] == [4, 5]
    one_prompt = arrange(grouped_pairs([4]), 2, seed=0)
    assert one_prompt.same_prompt_pairs == 4 and not any(one_prompt.genuine)
    with pytest.raises(PairsDataError, match="at least 2 examples"):
        arrange(grouped_pairs([1]), 4, seed=0)
    assert [len(b) for b in arrange(grouped_pairs([1] * 5), 1, seed=0, mismatched=False).batches] == [1] * 5


def test_read_pairs_without_completion_ended(tmp_path: Path):
    rows = [{k: v for k, v in r.items() if k != "completion_ended"} for r in pair_rows(3, 0, "val")]
    path = write_pairs(tmp_path, rows)
    splits, has_ended = read_pairs(path)
    assert not has_ended and not splits["train"]
    assert Counter(r.label for r in splits["val"]) == Counter(r["label"] for r in rows)
    assert all(r.ended for r in splits["val"])
