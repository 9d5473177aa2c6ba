"""Each apparatus rule on small fixtures: what it must remove, and prose it must leave alone."""

from __future__ import annotations

import dataclasses

import pytest

from src.config.sections.clean_librus import LibrusRulesConfig
from src.data.librus.rules import RULE_ORDER, build_rules
from src.text.reflow import reflow_hard_wrap

PROSE = (
    "Отец мой Андрей Петрович служил при графе Минихе и вышел в отставку в 17.. году.\n"
    "— Был бы гвардии он завтра ж капитан, — сказал он, т. е. пошутил.\n"
    "Было холодно. Вместо ответа она засмеялась: «Начато — не кончено».\n"
    "* * *\n"
    "1812 год стоял у ворот, и в Москве говорили о войне.\n"
    "Направо — Енисей.\n"
)


def run_rule(name: str, text: str, **overrides: object) -> tuple[str, int, int]:
    cfg = dataclasses.replace(LibrusRulesConfig(), **overrides)
    rule = {r.name: r for r in build_rules(cfg)}[name]
    out, count = rule(text)
    return out, count.matches, count.chars_removed


@pytest.mark.parametrize("name", RULE_ORDER)
def test_no_rule_touches_plain_prose(name: str) -> None:
    out, matches, chars = run_rule(name, PROSE)
    assert (out, matches, chars) == (PROSE, 0, 0)


@pytest.mark.parametrize(
    ("name", "text", "kept", "gone"),
    [
        ("credits", "-" * 20 + "\nOCR: Олег\nSpellcheck: Н. К.\n" + "-" * 20 + "\nТекст.\n",
         "Текст.", "OCR"),
        ("credits", "OCR, spellcheck: Елена Ю., 2002\nТекст.\n", "Текст.", "Елена"),
        ("footnotes", "Текст.\n" + "-" * 20 + "\n(сноска 1) Глава не вошла.\n" + "-" * 20 + "\n",
         "Текст.", "Глава не вошла"),
        ("footnotes", "Текст.\n\n[2] Сноска о море,\nв две строки.\n\nДальше.\n", "Дальше.", "в две строки"),
        ("apparatus_sections", "Текст работы.\nПРИМЕЧАНИЯ\n1 Заметка.\nСписок сокращений\nГПБ\n",
         "Текст работы.", "Заметка"),
        ("apparatus_sections", "Часть первая.\nПримечания\n(1) турнюр\n * ЧАСТЬ ВТОРАЯ * \nДальше текст.\n",
         "Дальше текст.", "турнюр"),
        ("letter_headers", "Чехов — А. С. Суворину\nМилый Алексей Сергеевич!\n", "Милый", "Суворину"),
        ("letter_headers", "12. Ал. П. ЧЕХОВУ\nДорогой брат!\n", "Дорогой брат!", "ЧЕХОВУ"),
        ("textological_notes", "Текст.\nНачато: Милый\nЗаметка на полях: нет\n", "Текст.", "Милый"),
        ("textological_notes", "и он <Далее зачеркнуто: ушел> вернулся\n", "и он вернулся", "ушел"),
        ("archive_codes", "Печатается по автографу (ЦГАЛИ, ф. 549, оп. 1, ед. хр. 12).\nТекст.\n",
         "Текст.", "ЦГАЛИ"),
        ("archive_codes", "Письмо хранится: ГБЛ, ф. 331, к. 1, ед. хр. 5.\n", "Письмо хранится:", "ГБЛ"),
        ("volume_refs", "Об этом он писал (см. т. 5, с. 123-125) не раз.\n", "писал не раз", "т. 5"),
        ("volume_refs", "См. также ПСС, т. XII.\n", "См. также", "XII"),
        ("bib_footnotes", "3 Рядом с «Новым временем», т. I, с. 45.\nТекст.\n", "Текст.", "Новым"),
        ("bib_footnotes", "Грачев И. К. Рассказы и очерки. СПб., 1899\nТекст.\n", "Текст.", "СПб"),
        ("index_entries", "Лейкин Н. А. (1841-1906) — 127, 438\nТекст.\n", "Текст.", "Лейкин"),
        ("note_markers", "Он ушел[1] и вернулся.(5) Слово* и {2} всё¹.\n",
         "Он ушел и вернулся. Слово и всё.", "["),
        ("separator_lines", "Текст.\n----------\nЕще.\n", "Еще.", "---"),
    ],
)
def test_rule_removes_apparatus(name: str, text: str, kept: str, gone: str) -> None:
    out, matches, chars = run_rule(name, text)
    assert kept in " ".join(out.split()) or kept in out
    assert gone not in out
    assert matches >= 1 and chars == len(text) - len(out) > 0


def test_rules_are_switchable() -> None:
    names = [r.name for r in build_rules(LibrusRulesConfig(note_markers=False, credits=False))]
    assert "note_markers" not in names and "credits" not in names
    assert names == [n for n in RULE_ORDER if n not in ("note_markers", "credits")]


def test_letters_stay_and_long_lines_are_not_headers() -> None:
    text = "Чехов — А. С. Суворину\nМилый Алексей Сергеевич! Пишу Вам из Мелихова.\n"
    out, _, _ = run_rule("letter_headers", text)
    assert out == "Милый Алексей Сергеевич! Пишу Вам из Мелихова.\n"
    long_line = "Иванов — " + "очень длинная строка " * 5 + "А. С. Суворину\n"
    assert run_rule("letter_headers", long_line)[1] == 0


def test_reflow_joins_wrapped_prose_and_keeps_verse() -> None:
    para = ("     Отец мой  Андрей  Петрович  Гринев в  молодости своей служил  при графе\n"
            "Минихе,  и вышел в отставку  премьер-маиором в 17.. году. С тех пор жил он в\n"
            "своей деревне.\n")
    verse = "     Мой дядя самых честных правил,\n     Когда не в шутку занемог,\n"
    text = (para * 12) + verse + para * 12
    out, reflowed = reflow_hard_wrap(text, 50, 120, 0.8, 0.4, 20, 0.9)
    assert reflowed
    lines = out.split("\n")
    assert lines[0].startswith("Отец мой") and lines[0].endswith("своей деревне.")
    assert "Мой дядя самых честных правил," in lines and "Когда не в шутку занемог," in lines
    # Verse alone (no common wrap width) is never reflowed.
    assert reflow_hard_wrap(verse * 30, 50, 120, 0.8, 0.4, 20, 0.9) == (verse * 30, False)
    # One paragraph per line already: left as is.
    long_lines = ("Очень длинный абзац. " * 40 + "\n") * 30
    assert reflow_hard_wrap(long_lines, 50, 120, 0.8, 0.4, 20, 0.9)[1] is False
