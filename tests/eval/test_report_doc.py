"""Number formatting, best-value marking and escaping of the report card's document model."""

from __future__ import annotations

import pytest

from src.eval.report_doc import (
    Absent,
    Cell,
    Para,
    Section,
    SideBySide,
    Table,
    fmt,
    fmt_count,
    fmt_seconds,
    marked_row,
    md_cell,
    render_html,
    render_markdown,
)


@pytest.mark.parametrize("value, shown", [
    (None, "—"), (True, "yes"), (False, "no"), (1234567, "1,234,567"), (1234567.8, "1,234,568"),
    (17445.0, "17,445"), (21.0, "21.00"), (123.456, "123.5"), (12.3456, "12.35"), (1.8116, "1.812"), (0.12345, "0.123"),
    (1.0, "1.000"), (0.0, "0.000"), (-0.0, "0.000"), (-0.0153, "-0.015"), (2.5e-05, "2.50e-05"),
    (float("nan"), "nan"), (float("inf"), "∞"), (float("-inf"), "-∞"), ("bpe", "bpe"),
])
def test_fmt(value, shown):
    assert fmt(value) == shown


def test_counts_and_durations():
    assert fmt_count(5.0) == "5" and fmt_count(0.0) == "0" and fmt_count(2.5) == "2.500"
    assert fmt_seconds(12.34) == "12.3 s"
    assert fmt_seconds(412.6) == "6 min 53 s"
    assert fmt_seconds(3725) == "1 h 02 min"
    assert fmt_seconds(None) == "—"


def test_marked_row_marks_the_best_by_direction_and_only_when_comparable():
    def marks(values, direction):
        return [c.best for c in marked_row("m", values, direction)[1:]]

    assert marks([0.3, 0.1, 0.2], -1) == [False, True, False]
    assert marks([0.3, 0.1, 0.2], +1) == [True, False, False]
    assert marks([0.3, 0.1, 0.2], 0) == [False, False, False]
    assert marks([0.1, None, 0.1], -1) == [True, False, True]  # ties both marked, None skipped
    assert marks([0.1, None, "x"], -1) == [False, False, False]  # one number: nothing to compare
    assert marks([float("nan"), 0.5, 0.7], -1) == [False, True, False]  # nan never wins


def test_markdown_cells_are_inert():
    assert md_cell("<b>a|b</b>\n*x*") == "&lt;b&gt;a\\|b&lt;/b&gt;<br>\\*x\\*"


def test_control_characters_become_visible_and_cr_a_newline():
    assert md_cell("a\x00b\x1bc\r\nd\re") == "a\\\\x00b\\\\x1bc<br>d<br>e"
    page = render_html("R", [Section("S", "s", [Para("bell\x07 del\x7f")])], "n")
    assert "bell\\x07 del\\x7f" in page and "\x07" not in page


def test_both_renderings_escape_and_mark_the_same_blocks():
    section = Section("Title & <co>", "t", [
        Table(["model", "a"], [[Cell("<m>"), Cell("0.5", best=True)]], caption="cap"),
        Table(["empty"], [], caption="nothing here"),
        Absent("no <data>"), Para("x & y"),
        SideBySide("p1 (ru)", "<q>", [("sft", "<script>alert(1)</script>")]),
    ])
    md = render_markdown("R", [section], "note")
    assert "## Title &amp; &lt;co&gt;" in md and "| &lt;m&gt; | **0.5** |" in md
    assert "absent: no values for nothing here" in md and "absent: no &lt;data&gt;" in md
    page = render_html("R", [section], "note")
    assert '<section id="t">' in page and "<h2>Title &amp; &lt;co&gt;</h2>" in page
    assert '<td class="num best"><strong>0.5</strong></td>' in page
    assert '<p class="absent">absent: no values for nothing here</p>' in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "<script>" not in page
