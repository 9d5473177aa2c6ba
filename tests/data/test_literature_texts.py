"""Literature read from plain-text files: the editorial apparatus goes, the work stays, counted."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from src.data.literature import literature_texts

BOOK = """Глава первая

— Где же вы были?[12] — спросил он.
— Дома, — ответила она{3}.

Примечания

[12] Сноска издателя о том, где они были.
"""


def test_text_files_lose_note_marks_and_notes_but_keep_the_dialogue(tmp_path: Path) -> None:
    (tmp_path / "book.txt").write_text(BOOK, encoding="utf-8")
    counts: Counter[str] = Counter()
    ((work, text),) = list(literature_texts("", [str(tmp_path)], "markov", counts))
    assert work == "text:book.txt"
    assert "— Где же вы были? — спросил он." in text and "— Дома, — ответила она." in text
    assert "[12]" not in text and "{3}" not in text and "Сноска издателя" not in text
    assert counts["text_file_apparatus_note_markers"] >= 2 and counts["documents"] == 1


def test_apparatus_rules_can_be_switched_off(tmp_path: Path) -> None:
    (tmp_path / "book.txt").write_text(BOOK, encoding="utf-8")
    counts: Counter[str] = Counter()
    ((_, text),) = list(literature_texts("", [str(tmp_path)], "markov", counts, apparatus_rules=False))
    assert text == BOOK and not any(k.startswith("text_file_apparatus") for k in counts)


def test_real_turgenev_file_loses_its_note_marks(shared_data: Path) -> None:
    book = shared_data / "corpus_ru" / "prose" / "Turgenev" / "Отцы и дети.txt"
    raw = book.read_text(encoding="utf-8")
    assert "utile dulci?[139]" in raw
    counts: Counter[str] = Counter()
    ((_, text),) = list(literature_texts("", [str(book)], "markov", counts))
    assert "utile dulci? Так-то" in text
    assert counts["text_file_apparatus_note_markers"] > 100
    # the work itself is kept: all but the apparatus (a few per cent at most)
    assert len(text) > 0.9 * len(raw)
