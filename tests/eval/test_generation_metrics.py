"""reply_metrics on hand-made replies: loops, markdown walls, canned templates, distinct-n."""

from __future__ import annotations

import pytest

from src.eval.generation_metrics import KEYS, repeated_ngram_rate, reply_metrics

PROSE = ("Он долго стоял у окна и смотрел, как за рекой зажигаются огни. Потом сел к столу, "
         "раскрыл старую тетрадь и начал писать письмо брату.")
LOOP = "я не знаю, " * 8
WALL = "\n".join(["### 1. Понимание темы", "- **Шаг первый**: соберите сведения о предмете.",
                  "- **Шаг второй**: проанализируйте их со всех сторон.",
                  "- **Шаг третий**: сделайте выводы и запишите их.",
                  "### 2. Итоги", "1. Проверьте результат ещё раз внимательно.",
                  "2. Поделитесь выводами с коллегами по работе."]) * 2
CANNED = "1. Соберите информацию 2. Проанализируйте данные"


def metrics(replies, prompts=None, ended=None, **kw):
    prompts = prompts or ["Расскажи, что он делал у окна вечером?"] * len(replies)
    ended = [True] * len(replies) if ended is None else ended
    return reply_metrics(replies, prompts, ended=ended, n_tokens=[len(r.split()) for r in replies],
                         max_new_tokens=64, **kw)


def test_keys_are_the_contract():
    assert set(metrics([PROSE])) == set(KEYS)


def test_a_looping_reply_against_one_that_does_not():
    looped = metrics([LOOP])
    plain = metrics([PROSE])
    assert looped["loop_rate"] == 1.0 and plain["loop_rate"] == 0.0
    assert looped["repeated_ngram_rate"] > 0.6 and plain["repeated_ngram_rate"] == 0.0
    assert looped["distinct_2"] < 0.3 < plain["distinct_2"] == 1.0
    half = metrics([LOOP, PROSE])
    assert half["loop_rate"] == 0.5 and half["n"] == 2


def test_loop_on_token_ids_when_given():
    # Text without repetition, token ids that loop: the ids decide (as in the KTO guard).
    m = metrics([PROSE], token_ids=[[7, 8] * 10])
    assert m["loop_rate"] == 1.0
    assert metrics([PROSE], token_ids=[list(range(20))])["loop_rate"] == 0.0


def test_markdown_wall_and_canned():
    m = metrics([WALL, PROSE, CANNED, PROSE])
    assert m["markdown_wall_rate"] == 0.25
    assert m["canned_rate"] == 0.25  # the template shares no content word with the prompt
    # The same short list is not canned when it answers the prompt's own words.
    assert metrics([CANNED], prompts=["Как проанализировать данные и собрать информацию?"])["canned_rate"] == 0.0


def test_end_of_turn_rate_and_lengths():
    m = metrics(["да", "нет, не так", "может быть"], ended=[True, False, True])
    assert m["end_of_turn_rate"] == pytest.approx(2 / 3)
    assert m["mean_length_tokens"] == pytest.approx((1 + 3 + 2) / 3)
    assert m["mean_length_chars"] == pytest.approx((2 + 11 + 10) / 3)


def test_distinct_n_counts_words_pooled_over_replies():
    m = metrics(["кот спит", "кот ест"])
    assert m["distinct_1"] == pytest.approx(3 / 4)  # кот, спит, ест of 4 words
    assert m["distinct_2"] == 1.0


def test_repeated_ngram_rate_counts_within_a_reply_only():
    assert repeated_ngram_rate([list("abcabc")]) == pytest.approx(1 / 4)  # abc bca cab abc: one repeat
    assert repeated_ngram_rate([list("abc"), list("abc")]) == 0.0  # the same trigram in two replies
    assert repeated_ngram_rate([list("ab")]) == 0.0


def test_no_replies_and_mismatched_lengths():
    empty = reply_metrics([], [], ended=[], n_tokens=[], max_new_tokens=8)
    assert empty["n"] == 0 and all(v == 0.0 for v in empty.values())
    with pytest.raises(ValueError, match="2 replies but 1 prompts"):
        reply_metrics(["a", "b"], ["p"], ended=[True, True], n_tokens=[1, 1], max_new_tokens=8)


def test_thresholds_pass_through():
    # A 2x repetition is no loop by default; with min_repeats 2 and a short span it is.
    text = "один два три один два три"
    assert metrics([text])["loop_rate"] == 0.0
    assert metrics([text], thresholds={"loop_min_repeats": 2, "loop_min_span": 4})["loop_rate"] == 1.0
