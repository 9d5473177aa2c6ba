"""Encoding conversations for SFT: the loss shift, turn-boundary truncation, bad rows, packing."""

from __future__ import annotations

import numpy as np
import pytest

from src.generation import chat_template
from src.models.gpt import IGNORE_INDEX
from src.tokenizers.char import CharTokenizer
from src.training.sft_data import (
    EncodeReport,
    TrainPacks,
    ValPacks,
    encode_conversation,
    encode_turns,
    pack,
    pack_windows,
    read_dialogues,
)
from tests.training.sft_fixtures import ALPHABET, conv, write_dialogues

TOK = CharTokenizer(ALPHABET)


def test_turn_by_turn_encoding_matches_the_template() -> None:
    messages = conv("hi?", "hello.", "how are you?", "fine.", system="be kind.")
    ids, mask, cuts = encode_turns(TOK, messages)
    assert (ids, mask) == tuple(map(list, chat_template.encode_for_training(TOK, messages)))
    assert len(cuts) == 2 and cuts[-1] == (len(ids), len("hello.") + len("fine."))


def test_targets_are_shifted_and_carry_loss_only_on_replies_and_their_end() -> None:
    report = EncodeReport()
    enc = encode_conversation(TOK, conv("hi?", "yo."), 64, "truncate", report)
    windows = pack_windows([enc], 64)
    x, y = windows.x[0], windows.y[0]
    n = enc.positions
    assert x[:n].tolist() == enc.ids[:-1].tolist()
    under_loss = [int(t) for t in y[:n] if t != IGNORE_INDEX]
    end = TOK.special_tokens["<|end|>"]
    assert TOK.decode(under_loss[:-1]) == "yo." and under_loss[-1] == end
    # every target under loss is the next input token
    for j in range(n - 1):
        if y[j] != IGNORE_INDEX:
            assert y[j] == x[j + 1]
    assert (y[n:] == IGNORE_INDEX).all() and windows.loss_tokens[0] == 4 == report.loss_tokens


def test_too_long_conversations_truncate_at_a_turn_boundary_or_drop() -> None:
    messages = conv("a?", "b.", "c?", "d." * 20)
    ids, _, cuts = encode_turns(TOK, messages)
    limit = cuts[0][0] + 3  # room for the first exchange only
    report = EncodeReport()
    enc = encode_conversation(TOK, messages, limit, "truncate", report)
    assert len(enc.ids) == cuts[0][0] and report.truncated == 1 and enc.loss_bytes == 2
    assert TOK.decode(enc.ids.tolist()).endswith("b.<|end|>\n")
    dropped = EncodeReport()
    assert encode_conversation(TOK, messages, limit, "drop", dropped) is None
    assert dropped.dropped == {"too_long": 1}
    nothing_fits = EncodeReport()
    assert encode_conversation(TOK, messages, 4, "truncate", nothing_fits) is None
    assert nothing_fits.dropped == {"too_long_first_reply": 1}


@pytest.mark.parametrize(("messages", "reason"), [
    ([], "no_turns"),
    (conv("hi?"), "not_ending_with_assistant"),
    ([{"role": "user", "content": "a"}, {"role": "user", "content": "b"}], "turns_not_alternating"),
    ([{"role": "robot", "content": "a"}], "turns_not_alternating"),
    (conv("hi<|end|>", "x."), "special_token_in_content"),
    ([{"role": "user", "content": None}, {"role": "assistant", "content": "x"}], "invalid_message"),
])
def test_bad_conversations_are_counted_by_reason(messages, reason) -> None:
    report = EncodeReport()
    assert encode_conversation(TOK, messages, 64, "truncate", report) is None
    assert report.dropped == {reason: 1} and report.conversations == 1 and report.kept == 0


def test_best_fit_packing_respects_capacity_and_keeps_every_item() -> None:
    rng = np.random.default_rng(0)
    lengths = rng.integers(5, 120, size=500).tolist()
    bins = pack(lengths, 128)
    assert sorted(i for b in bins for i in b) == list(range(500))
    assert all(sum(lengths[i] for i in b) <= 128 for b in bins)
    waste = 1 - sum(lengths) / (128 * len(bins))
    assert waste < 0.10  # the bound; lengths up to 94 % of a window are the hard case
    with pytest.raises(ValueError, match="exceeds"):
        pack([200], 128)


def test_train_batches_are_a_pure_function_of_the_step_and_val_splits_over_ranks() -> None:
    items = []
    for i in range(30):
        enc = encode_conversation(TOK, conv("q" * (i % 7 + 1) + "?", "a" * (i % 5 + 1) + "."), 32,
                                  "truncate", EncodeReport())
        items.append(enc)
    windows = pack_windows(items, 32)
    whole = TrainPacks(windows, 2, 2, seed=3, rank=0, world=1, start=0)
    resumed = TrainPacks(windows, 2, 2, seed=3, rank=0, world=1, start=6)
    later = [b for _, b in zip(range(10), iter(whole), strict=False)][6:]
    for a, b in zip(later, iter(resumed), strict=False):
        assert all(np.array_equal(p, q) for p, q in zip(a, b, strict=True))
    ranks = [ValPacks(windows, 2, 100, rank=r, world=2) for r in range(2)]
    assert sorted(ranks[0].indices + ranks[1].indices) == list(range(-(-len(windows) // 2)))


def test_read_dialogues_checks_columns_and_splits(tmp_path) -> None:
    from src.errors import InputError

    write_dialogues(tmp_path, [conv("a?", "b.")], [conv("c?", "d.")])
    splits = read_dialogues(tmp_path / "dialogues.parquet")
    assert len(splits["train"]) == 1 and splits["val"][0][0]["content"] == "c?"
    (tmp_path / "bad.parquet").write_bytes(b"not parquet")
    with pytest.raises(InputError, match="bad.parquet"):
        read_dialogues(tmp_path / "bad.parquet")
