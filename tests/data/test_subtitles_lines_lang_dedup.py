"""Utterance shaping (merge, split, scenes), language detection and duplicate detection."""

from __future__ import annotations

from collections import Counter

import pytest

from src.config.sections.clean_subs import SubsDedupConfig, SubsLangIdConfig, SubsLinesConfig
from src.data.subtitles.dedup import Candidate, find_duplicates, fingerprint
from src.data.subtitles.langid import detect_language
from src.data.subtitles.lines import CleanCue, build_utterances


def _utts(*cues: tuple[int, int, str], **cfg: object) -> list[str]:
    lines_cfg = SubsLinesConfig(**cfg)  # type: ignore[arg-type]
    cleaned = [CleanCue(s, e, text.split("\n")) for s, e, text in cues]
    return [u.text for u in build_utterances(cleaned, lines_cfg, Counter())]


def test_trailing_comma_continued_within_short_gap_even_in_caps() -> None:
    assert _utts((0, 2000, "AHEM. FOR MY NEXT TRICK,"), (2300, 4000, "NOTICE I HAVE NOTHING UP MY SLEEVES...")) == [
        "AHEM. FOR MY NEXT TRICK, NOTICE I HAVE NOTHING UP MY SLEEVES..."
    ]


def test_comma_with_long_gap_and_capital_is_not_merged() -> None:
    assert len(_utts((0, 2000, "FOR MY NEXT TRICK,"), (5000, 7000, "NOTICE THIS."))) == 2


def test_open_sentence_continued_by_lowercase() -> None:
    assert _utts((0, 1000, "Nobody saw it go out, nobody"), (3000, 4000, "heard the bell.")) == [
        "Nobody saw it go out, nobody heard the bell."
    ]


def test_closed_sentence_is_not_merged() -> None:
    assert len(_utts((0, 1000, "The boat came in early."), (1100, 2000, "and then it left."))) == 2


def test_no_final_punctuation_but_capital_start_is_not_merged() -> None:
    assert len(_utts((0, 1000, "Не знаю"), (1100, 2000, "Она сказала, что уже вышла"))) == 2


def test_ellipsis_continuation_joins_without_double_dots() -> None:
    assert _utts((0, 1000, "we'll be here..."), (1200, 2000, "...as six single people?")) == [
        "we'll be here... as six single people?"
    ]


def test_two_speakers_split_and_never_glued_to_previous() -> None:
    out = _utts((0, 1000, "And then,"), (1100, 2000, "- Old?\n- The young, hot ball and chain."))
    assert out == ["And then,", "Old?", "The young, hot ball and chain."]


def test_wrapped_lines_of_one_speaker_are_joined() -> None:
    assert _utts((0, 1000, "She doesn't love you either.\nShe's got this other guy Marco.")) == [
        "She doesn't love you either. She's got this other guy Marco."
    ]


def test_merge_respects_length_cap_and_switch() -> None:
    cues = ((0, 1000, "one two three,"), (1100, 2000, "four five six."))
    assert len(_utts(*cues, max_merged_chars=10)) == 2
    assert len(_utts(*cues, merge_continuations=False)) == 2


def test_repeated_lines_and_scenes() -> None:
    cleaned = [CleanCue(0, 1000, ["Hello."]), CleanCue(1000, 2000, ["Hello."]),
               CleanCue(2100, 3000, ["Who's there?"]), CleanCue(20000, 21000, ["Morning."])]
    counts: Counter[str] = Counter()
    utts = build_utterances(cleaned, SubsLinesConfig(scene_gap_ms=8000), counts)
    assert [(u.text, u.scene, u.start_ms, u.end_ms) for u in utts] == [
        ("Hello.", 0, 0, 2000), ("Who's there?", 0, 2100, 3000), ("Morning.", 1, 20000, 21000)
    ]
    assert counts["repeated_line"] == 1


@pytest.mark.parametrize(
    ("text", "language"),
    [
        ("Ну вот, приехали. Мам, тут даже связи нет. Зато есть крыжовник и речка за огородом. "
         "Что ты будешь делать, когда он приедет? Я не знаю, это не моё дело.", "ru"),
        ("Доброго ранку, пані Олено. Хліб ще теплий? Мені дві паляниці, будь ласка. Він завжди "
         "допомагає вам зранку. Тепер я сама, але в мене є радіо і кіт.", "uk"),
        ("The lamp went dark at ten past two. Nobody saw it go out, and nobody heard the bell. "
         "I don't know what you want from me.", "en"),
        ("Il fut un temps, avant l'existence du câble, où le présentateur local régnait en maître. "
         "Je ne sais pas ce que tu veux, c'est très bien.", "fr"),
        ("Đino, dođavola. Dolazi ovamo! Neće da izađe odatle. Mi ćemo to srediti, sve je u redu, "
         "samo još malo.", "hr"),
        ("我有个点子。我们要拿一堆汤匙，挖一条隧道然后把她丢到野外去，这样就好了。", "zh"),
    ],
)
def test_language_detection(text: str, language: str) -> None:
    assert detect_language(text, SubsLangIdConfig()).language == language


def test_language_unknown_for_too_little_text() -> None:
    assert detect_language("No! No!", SubsLangIdConfig()).language == "unknown"


def _lines(seed: int, n: int = 300) -> list[str]:
    words = ("lamp keeper boat stairs door key night sea wind bell clock oil cat tower rock grey "
             "north early late asleep count steps painted shut somebody longer").split()
    return [" ".join(words[(seed * 7 + i * j) % len(words)] for j in range(1, 9)) for i in range(n)]


def test_exact_and_near_duplicates_found_unrelated_kept() -> None:
    cfg = SubsDedupConfig()
    base = _lines(1)
    near = [line.upper() if i % 25 == 0 else line for i, line in enumerate(base)]  # case is ignored
    near[10:14] = ["a completely different line of dialogue number " + str(i) for i in range(4)]
    other = _lines(2)
    items = [
        Candidate("a", "en", len(base), fingerprint(base, cfg)),
        Candidate("b", "en", len(base) - 1, fingerprint(base, cfg)),
        Candidate("c", "en", len(near) - 2, fingerprint(near, cfg)),
        Candidate("d", "en", len(other), fingerprint(other, cfg)),
        Candidate("e", "ru", len(base), fingerprint(base, cfg)),  # other language: compared apart
    ]
    dups = {d.file_id: d for d in find_duplicates(items, cfg)}
    assert set(dups) == {"b", "c"}
    assert (dups["b"].kind, dups["b"].duplicate_of) == ("exact", "a")
    assert (dups["c"].kind, dups["c"].duplicate_of) == ("near", "a")
    assert dups["c"].similarity >= cfg.threshold


def test_near_duplicate_switch_off() -> None:
    cfg = SubsDedupConfig(near=False)
    base = _lines(3)
    near = base[:-5]
    items = [Candidate("a", "en", 300, fingerprint(base, cfg)), Candidate("b", "en", 295, fingerprint(near, cfg))]
    assert find_duplicates(items, cfg) == []
