"""The failure detectors on hand-made replies, Russian and English."""

from __future__ import annotations

import pytest

from src.eval.detectors import (
    compression_ratio,
    content_stems,
    detect_canned,
    detect_loop,
    detect_markdown_wall,
    detect_no_end,
    markdown_share,
)

PROSE_RU = ("Он долго стоял у окна и смотрел, как за рекой зажигаются огни. Потом сел к столу, "
            "раскрыл старую тетрадь и начал писать письмо брату, которого не видел уже семь лет. "
            "Слова шли тяжело: он зачёркивал, начинал снова, думал о матери, о доме в Орле, о том, "
            "как они в детстве ловили раков под мостом и как отец сердился, когда они возвращались "
            "мокрые и счастливые.")
PROSE_EN = ("She walked along the river until the lamps were lit on the far bank, then turned back "
            "toward the town, thinking of the letter she had not yet answered and of her brother, "
            "who had sailed for India in the spring and had written only twice since.")


@pytest.mark.parametrize("text", [PROSE_RU, PROSE_EN])
def test_prose_is_no_loop(text):
    result = detect_loop(text)
    assert not result.flagged
    assert 1.0 < result.score < 2.5


@pytest.mark.parametrize("text", [
    "я не знаю, " * 8,                                     # a clause over and over
    "the the the the the the the the the the the the the",  # one word
    "ааааааааааааааааааааааааааааааааааааааааааааааааааа",   # one letter (a char model's loop)
])
def test_repetition_is_a_loop(text):
    assert detect_loop(text).flagged


def test_loop_with_variation_is_caught_by_compression_alone():
    # No n-gram repeats back to back three times, but the text is a near-copy of itself.
    parts = [f"и он сказал ей, что придёт завтра утром, номер {i}. " for i in range(12)]
    text = "".join(parts)
    assert detect_loop(text, max_compression=1000).flagged is False  # the n-gram rule misses it
    result = detect_loop(text)
    assert result.flagged and result.score >= 3.5


def test_loop_on_token_ids_uses_them_instead_of_words():
    assert detect_loop("разный текст без повторов", tokens=[4, 5] * 10).flagged
    assert not detect_loop("разный текст без повторов", tokens=list(range(20))).flagged


def test_compression_ratio_of_empty_and_repeated_text():
    assert compression_ratio("") == 0.0
    assert compression_ratio("да " * 100) > 10


def test_content_stems_drop_stop_words_and_match_inflections():
    assert content_stems("Как начать малый бизнес?") == {"начат", "малый", "бизне"}
    assert content_stems("Малого бизнеса") & content_stems("малый бизнес") == {"бизне"}
    assert content_stems("and what is it") == set()
    assert content_stems("ёлка") == {"елка"}


@pytest.mark.parametrize(("reply", "prompt"), [
    ("1. Соберите информацию 2. Проанализируйте данные 3. Составьте отчёты",
     "Как открыть небольшую пекарню в маленьком городе?"),
    ("Хорошо, я понял.", "Расскажи мне о Пушкине и его сказках."),
    ("1. Collect information 2. Analyze data 3. Create reports", "How do I start a small bakery?"),
    ("", "Что почитать вечером?"),
])
def test_short_replies_that_ignore_the_prompt_are_canned(reply, prompt):
    result = detect_canned(reply, prompt)
    assert result.flagged
    assert result.score == 0.0


@pytest.mark.parametrize(("reply", "prompt"), [
    ("Пекарню лучше открывать рядом со школой: утром там всегда покупатели.",
     "Как открыть небольшую пекарню в маленьком городе?"),
    ("Start the bakery small: rent a kitchen by the hour first.", "How do I start a small bakery?"),
])
def test_replies_on_topic_are_not_canned(reply, prompt):
    result = detect_canned(reply, prompt)
    assert not result.flagged
    assert result.score > 0


def test_a_long_reply_is_never_canned_and_thresholds_apply():
    long_reply = " ".join(["слово"] * 41)
    assert not detect_canned(long_reply, "вопрос о погоде").flagged
    assert detect_canned(long_reply, "вопрос о погоде", max_words=50).flagged
    half = detect_canned("пекарня и погода", "пекарня")
    assert half.score == pytest.approx(0.5)
    assert not half.flagged and detect_canned("пекарня и погода", "пекарня", max_overlap=0.5).flagged


TUTORIAL_RU = """### 1. Понимание темы

**Нейропластичность** — это способность мозга меняться.

### 2. Основные принципы

- **Повторение**: регулярная практика укрепляет связи.
- **Новизна**: новые задачи создают новые пути.
- **Сон**: во сне память закрепляется.

### 3. Пример

```
учить(слова)
повторить(через_день)
```

1. Начните с малого.
2. Повторяйте каждый день.
3. Отдыхайте.
"""
TUTORIAL_EN = "\n".join([f"## Step {i}" + "\n* **Do this** first, then that.\n* Check the result." for i in range(1, 8)])


@pytest.mark.parametrize("text", [TUTORIAL_RU, TUTORIAL_EN])
def test_markdown_walls_are_flagged(text):
    result = detect_markdown_wall(text)
    assert result.flagged
    assert result.score > 0.6


def test_dialogue_dashes_and_short_lists_are_no_markdown_wall():
    dialogue = "\n".join(["— Куда ты идёшь? — спросил он.", "— Домой, — ответила она.",
                          "— Подожди меня, я провожу."] * 8)
    assert markdown_share(dialogue) == 0.0
    assert not detect_markdown_wall(dialogue).flagged
    short_list = "- хлеб\n- молоко\n- яйца"
    assert markdown_share(short_list) == 1.0
    assert not detect_markdown_wall(short_list).flagged  # too short to be a wall
    assert detect_markdown_wall(short_list, min_chars=10).flagged
    assert markdown_share("") == 0.0


def test_code_block_lines_count_as_markdown():
    text = "Вот код:\n```\nx = 1\ny = 2\n```\nГотово."
    assert markdown_share(text) == pytest.approx(4 / 6)


def test_no_end():
    assert detect_no_end(False, 400, 400) == (1.0, True)
    assert detect_no_end(True, 100, 400) == (0.25, False)
    assert detect_no_end(False, 30, 400).flagged  # stopped on another special token


def test_detect_failures_runs_every_detector_with_config_thresholds():
    from dataclasses import asdict

    from src.config.sections.detectors import DetectorConfig
    from src.eval.detectors import FAILURES, detect_failures

    found = detect_failures("я не знаю, " * 8, "Что почитать?", ended=False, n_tokens=80, max_new_tokens=80,
                            thresholds=asdict(DetectorConfig()))
    assert tuple(found) == FAILURES
    assert found["loop"].flagged and found["no_end"].flagged and not found["markdown_wall"].flagged
    strict = asdict(DetectorConfig(loop_max_compression=1000.0, loop_min_repeats=100, loop_min_span=1000))
    relaxed = detect_failures("я не знаю, " * 8, "", ended=True, n_tokens=5, max_new_tokens=80, thresholds=strict)
    assert not relaxed["loop"].flagged and not relaxed["no_end"].flagged


def test_failure_rates_count_each_detector_over_replies():
    from src.eval.detectors import failure_rates, words

    steps = ["Понять тему", "Найти книги", "Составить план", "Читать каждый день", "Писать конспекты",
             "Повторять выученное", "Задавать вопросы", "Отдыхать вовремя"]
    wall = "\n".join(f"### {i}. {s}\n- **Совет:** {s.lower()} помогает в учёбе" for i, s in enumerate(steps, 1))
    # one failure each: prose (cut at the limit: no end), a loop, a canned reply, a markdown wall
    replies = [PROSE_RU, "я не знаю, " * 8, "Спасибо за вопрос! Всё будет хорошо.", wall]
    prompts = ["Что он писал брату из Орла?", "Я не знаю, где он.", "Расскажи про старый дом у реки.",
               "Как учиться?"]
    tokens = [words(r) for r in replies]
    rates = failure_rates(replies, prompts, ended=[True, False, True, True], tokens=tokens, max_new_tokens=500)
    assert rates == {"loop_rate": 0.25, "canned_rate": 0.25, "markdown_wall_rate": 0.25, "no_end_rate": 0.25,
                     "eot_rate": 0.75}
    # the thresholds are the detectors' config keys: a wall needs more characters than it has
    strict = failure_rates(replies, prompts, ended=[True] * 4, tokens=tokens, max_new_tokens=500,
                           thresholds={"markdown_min_chars": 10_000})
    assert strict["markdown_wall_rate"] == 0.0 and strict["eot_rate"] == 1.0


def test_failure_rates_of_no_replies_and_mismatched_lengths():
    from src.eval.detectors import failure_rates

    assert failure_rates([], [], ended=[], tokens=[], max_new_tokens=8) == {
        "loop_rate": 0.0, "canned_rate": 0.0, "markdown_wall_rate": 0.0, "no_end_rate": 0.0, "eot_rate": 0.0}
    with pytest.raises(ValueError, match="must be as many"):
        failure_rates(["a"], [], ended=[True], tokens=[[1]], max_new_tokens=8)
