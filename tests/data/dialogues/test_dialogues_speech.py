"""Direct speech extraction: the author's remarks removed, speakers alternating, drops counted."""

from __future__ import annotations

from collections import Counter

import pytest

from src.config.sections.build_dialogues import DialogueLiteratureConfig
from src.data.dialogues.build import literature_conversations, read_text_file
from src.data.dialogues.speech import paragraph_speech, quoted_spans, speech_runs, split_paragraphs


@pytest.mark.parametrize("paragraph, spoken", [
    ("— Да, — сказал он, — пойдём.", "Да, пойдём."),
    ("— Ура-а-а! — кричал он.", "Ура-а-а!"),
    ("— Не могу, — ответил он, вставая. — Завтра приходите.", "Не могу. Завтра приходите."),
    ("— Я — человек простой, — сказал купец.", "Я — человек простой."),  # a dash inside speech stays
    ("-- Что ж, -- сказал он. -- Поедем.", "Что ж. Поедем."),  # typewriter dashes (55 corpus files)
    ("«Как я устала! — думала она. — Скорее бы домой»", "Как я устала! Скорее бы домой"),
    ("Он помолчал и сказал: — Иди домой, — и отвернулся.", "Иди домой."),
    ('"My dear," said his wife, "have you heard the news?"', "My dear, have you heard the news?"),
    ("“Not at all,” he replied.", "Not at all."),
])
def test_author_remarks_are_removed(paragraph: str, spoken: str) -> None:
    speech = paragraph_speech(paragraph)
    assert speech is not None and speech.text == spoken


@pytest.mark.parametrize("paragraph", [
    "Он долго смотрел в окно и молчал.",
    "Он читал газету «Голос» и курил трубку весь вечер, до самой глубокой ночи, не вставая.",
    "Mr. Bennet replied that he had not.",
])
def test_narrative_is_not_speech(paragraph: str) -> None:
    assert paragraph_speech(paragraph) is None


def test_unclosed_quote_is_not_a_span() -> None:
    assert quoted_spans("«Начало без конца") is None
    assert quoted_spans("a «b „c“ d» e") == [(3, 10)]


STORY = """Глава первая
Вечером в гостиную вошёл доктор.
— Вы звали меня? — спросил он, снимая шляпу.
— Звала, — ответила хозяйка. — Садитесь, прошу вас.
— Благодарю.
— Чаю хотите?
Доктор сел у самовара и долго молчал.
— Поздно уже, — сказал он наконец.
Часы пробили полночь."""


def test_runs_alternate_and_narrative_breaks_them() -> None:
    counts: Counter[str] = Counter()
    convs = list(literature_conversations(STORY, DialogueLiteratureConfig(), counts))
    assert convs == [["Вы звали меня?", "Звала. Садитесь, прошу вас.", "Благодарю.", "Чаю хотите?"]]
    # the lone line after the narrative paragraph is a run too short to be a dialogue: counted
    assert counts["turns_dropped_run_too_short"] == 1
    assert counts["paragraphs_speech_dash"] == 5
    assert counts["paragraphs_narrative"] == 4


def test_odd_last_turn_and_long_turns_are_counted() -> None:
    counts: Counter[str] = Counter()
    text = "— Раз.\n— Два.\n— Три.\n— " + "слово " * 300 + "\n— Четыре."
    runs = list(speech_runs(text, counts, max_turn_chars=200))
    assert runs == [["Раз.", "Два.", "Три."], ["Четыре."]]
    assert counts["dropped_speech_too_long"] == 1


def test_gutenberg_wrapped_paragraphs_are_joined() -> None:
    text = "It was late.\nThe fire was low.\n\n\"Are you cold?\" she asked\nquietly.\n\n\"No.\"\n"
    assert split_paragraphs(text) == ["It was late. The fire was low.", "\"Are you cold?\" she asked quietly.",
                                      "\"No.\""]


@pytest.mark.real_data
def test_real_russian_prose(shared_data) -> None:
    """Chekhov's «Анна на шее» (corpus_ru): speech found, no author's remark left in it."""
    text = read_text_file(shared_data / "corpus_ru" / "prose" / "Chekhov" / "Анна на шее.txt")
    counts: Counter[str] = Counter()
    convs = list(literature_conversations(text, DialogueLiteratureConfig(), counts))
    turns = [t for c in convs for t in c]
    assert ["Зачем мы здесь стоим?", "Здесь разъезд, ожидают почтового поезда."] in convs
    assert all(len(c) % 2 == 0 and len(c) >= 2 for c in convs)
    for verb in ("сказал он", "ответили ей", "кричал он", "спросила она"):
        assert not any(verb in t for t in turns), verb
    assert counts["remark_chars_removed"] > 0


@pytest.mark.real_data
def test_real_english_prose(shared_data) -> None:
    text = read_text_file(shared_data / "corpus_en" / "pride_and_prejudice__pg1342-0.txt")
    counts: Counter[str] = Counter()
    convs = list(literature_conversations(text, DialogueLiteratureConfig(), counts))
    turns = [t for c in convs for t in c]
    assert len(convs) > 100
    # “Do not you want to know who has taken it?” cried his wife, impatiently. / “_You_ want ...”
    assert ["Do not you want to know who has taken it?",
            "_You_ want to tell me, and I have no objection to hearing it."] in convs
    assert not any("cried his wife" in t or "returned she" in t for t in turns)
