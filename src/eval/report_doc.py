"""A tiny document model for the report card and its two renderings: Markdown and one HTML file.

The sections are built once as blocks (paragraphs, tables, figures, side-by-side replies) and each
renderer walks the same blocks, so report.md and report.html can never disagree on a number or a
heading. Every piece of text from the results (model names, replies, prompts, reasons) is escaped
here, in one place: a reply containing `<script>` shows as text in both files.
"""

from __future__ import annotations

import base64
import html
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

MISSING = "—"


def fmt(value: Any) -> str:
    """A number as a reader wants it: thousands separators, about three significant decimals."""
    if value is None:
        return MISSING
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "∞" if value > 0 else "-∞"
        size = abs(value)
        if value == 0:
            return "0.000"  # also -0.0, which would print as "-0.000"
        if size >= 1000:
            return f"{value:,.0f}"
        if size >= 100:
            return f"{value:.1f}"
        if size >= 10:
            return f"{value:.2f}"
        if size >= 0.001:
            return f"{value:.3f}"
        return f"{value:.2e}"
    return str(value)


def fmt_count(value: Any) -> str:
    """A count (read/wrote/dropped): whole numbers without decimals even when stored as floats."""
    if isinstance(value, float) and value.is_integer():
        return f"{int(value):,}"
    return fmt(value)


def fmt_seconds(value: Any) -> str:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        return fmt(value)
    if value < 60:
        return f"{value:.1f} s"
    minutes, seconds = divmod(round(value), 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@dataclass
class Cell:
    text: str
    best: bool = False


@dataclass
class Table:
    headers: list[str]
    rows: list[list[Cell]]
    caption: str = ""


@dataclass
class Para:
    text: str


@dataclass
class Absent:
    reason: str


@dataclass
class Items:
    items: list[str]


@dataclass
class Figure:
    png: bytes
    alt: str


@dataclass
class Sub:
    """A sub-heading inside a section."""
    title: str


@dataclass
class SideBySide:
    """One prompt and every model's reply to it."""
    title: str
    prompt: str
    replies: list[tuple[str, str]]


@dataclass
class Section:
    title: str
    anchor: str
    blocks: list[Any] = field(default_factory=list)


def marked_row(label: str, values: list[Any], direction: int, formatter=fmt) -> list[Cell]:
    """A table row of `values` with the best one(s) marked: direction +1 higher is better, -1 lower,
    0 no better (a mean length). Nothing is marked when fewer than two values can be compared."""
    numbers = [v for v in values if is_number(v)]
    best = None
    if direction and len(numbers) >= 2:
        best = max(numbers) if direction > 0 else min(numbers)
    return [Cell(label)] + [Cell(formatter(v), best is not None and is_number(v) and v == best)
                            for v in values]


def metric_table(rows: tuple, data: Mapping[str, Any], *, first: str = "metric", caption: str = "",
                 extras: bool = True, skip: tuple[str, ...] = ()) -> Table:
    """Known metrics `rows` ((key, label, direction), ...) x the columns of `data` (column -> its
    figures), best per row marked, rows with no value anywhere left out. With `extras`, every other
    key the columns carry follows unmarked (a sub-object flattened one level, lists left out), so a
    figure a producer adds later still shows without a change here."""
    columns = {col: fig if isinstance(fig, Mapping) else {} for col, fig in data.items()}
    body = []
    for key, label, direction in rows:
        values = [fig.get(key) for fig in columns.values()]
        if any(v is not None for v in values):
            body.append(marked_row(label, values, direction))
    known = {key for key, _, _ in rows} | set(skip)
    for key in dict.fromkeys(k for fig in columns.values() for k in fig if k not in known):
        values = [fig.get(key) for fig in columns.values()]
        subs = dict.fromkeys(s for v in values if isinstance(v, Mapping) for s in v)
        for sub in subs:
            body.append(marked_row(f"{key} · {sub}", [v.get(sub) if isinstance(v, Mapping) else None
                                                      for v in values], 0))
        if not subs and any(v is not None and not isinstance(v, (list, Mapping)) for v in values):
            body.append(marked_row(key, [None if isinstance(v, (list, Mapping)) else v
                                         for v in values], 0))
    return Table([first] + list(columns), body, caption)


def kv_table(data: Mapping[str, Any], formatter=fmt, first: str = "figure") -> Table:
    return Table([first, "value"], [[Cell(str(k)), Cell(formatter(v))] for k, v in data.items()
                                    if not isinstance(v, (Mapping, list))])


# ---------------------------------------------------------------- Markdown

# A cell that reads as a number (right-aligned): "1,234", "0.125", "2.5e-04", "12.3 s", "—".
_NUMERIC = re.compile(r"^[-+]?[\d,.]+(e[-+]?\d+)?( ?[a-z%]+)?$|^—$")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_MD_SPECIAL = re.compile(r"([\\`*_\[\]|~])")


def visible(text: Any) -> str:
    """Control characters (invalid in HTML, invisible in Markdown) as visible \\xNN; CR as newline."""
    text = str(text).replace("\r\n", "\n").replace("\r", "\n")
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def md_text(text: str) -> str:
    """Text from the results made inert in Markdown: HTML escaped, markup characters backslashed."""
    return _MD_SPECIAL.sub(r"\\\1", html.escape(visible(text), quote=False))


def md_cell(text: str) -> str:
    return md_text(text).replace("\n", "<br>")


def _md_table(table: Table) -> list[str]:
    def cell(c: Cell) -> str:
        return f"**{md_cell(c.text)}**" if c.best else md_cell(c.text)

    lines = [f"*{md_text(table.caption)}*", ""] if table.caption else []
    lines.append("| " + " | ".join(md_cell(h) for h in table.headers) + " |")
    align = ["---:" if i and table.rows and all(_NUMERIC.match(r[i].text) for r in table.rows if i < len(r))
             else "---" for i in range(len(table.headers))]
    lines.append("|" + "|".join(align) + "|")
    lines.extend("| " + " | ".join(cell(c) for c in row) + " |" for row in table.rows)
    return lines + [""]


def render_markdown(title: str, sections: list[Section], note: str) -> str:
    out = [f"# {md_text(title)}", "", md_text(note), ""]
    for section in sections:
        out += [f"## {md_text(section.title)}", ""]
        for block in section.blocks:
            if isinstance(block, Para):
                out += [md_text(block.text), ""]
            elif isinstance(block, Absent):
                out += [f"absent: {md_text(block.reason)}", ""]
            elif isinstance(block, Items):
                out += [f"- {md_text(item)}" for item in block.items] + [""]
            elif isinstance(block, Sub):
                out += [f"### {md_text(block.title)}", ""]
            elif isinstance(block, Table) and not block.rows:
                out += [f"absent: no values for {md_text(block.caption or block.headers[0])}", ""]
            elif isinstance(block, Table):
                out += _md_table(block)
            elif isinstance(block, Figure):
                # Markdown viewers strip data: images, so the figure lives in report.html only.
                out += [f"*Figure (in report.html): {md_text(block.alt)}*", ""]
            elif isinstance(block, SideBySide):
                out += [f"#### {md_text(block.title)}", "", "> " + md_cell(block.prompt), ""]
                out += _md_table(Table([m for m, _ in block.replies],
                                       [[Cell(r) for _, r in block.replies]]))
    return "\n".join(out).rstrip("\n") + "\n"


# ---------------------------------------------------------------- HTML

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;margin:2rem auto;
max-width:72rem;padding:0 1rem;color:#1d1d1f;line-height:1.45}
h1{margin-bottom:.2rem}h2{border-bottom:2px solid #ddd;padding-bottom:.2rem;margin-top:2.2rem}
nav ol{columns:3;font-size:.9rem}table{border-collapse:collapse;margin:.6rem 0 1rem;font-size:.9rem}
th,td{border:1px solid #d0d0d0;padding:.25rem .55rem;vertical-align:top}th{background:#f3f3f3}
tbody th{text-align:left}
td.num{text-align:right;font-variant-numeric:tabular-nums}td.best{font-weight:700;background:#e6f4ea}
caption{caption-side:top;text-align:left;font-style:italic;padding-bottom:.2rem}
p.absent{color:#8a5300;font-style:italic}img{max-width:100%;height:auto;border:1px solid #eee}
.sample{border:1px solid #ddd;border-radius:6px;padding:.5rem .8rem;margin:.8rem 0}
.prompt{white-space:pre-wrap;background:#f7f7f7;padding:.4rem .6rem;border-radius:4px}
.replies{display:grid;grid-template-columns:repeat(auto-fit,minmax(16rem,1fr));gap:.6rem}
.reply h4{margin:.3rem 0}.reply div{white-space:pre-wrap;font-size:.9rem}
"""



def esc(text: Any) -> str:
    return html.escape(visible(text), quote=True)


def _html_table(table: Table) -> list[str]:
    out = ["<table>"]
    if table.caption:
        out.append(f"<caption>{esc(table.caption)}</caption>")
    out.append("<thead><tr>" + "".join(f"<th>{esc(h)}</th>" for h in table.headers) + "</tr></thead>")
    out.append("<tbody>")
    for row in table.rows:
        cells = []
        for i, c in enumerate(row):
            classes = (["num"] if i and _NUMERIC.match(c.text) else []) + (["best"] if c.best else [])
            attr = f' class="{" ".join(classes)}"' if classes else ""
            tag = "th" if i == 0 else "td"
            text = f"<strong>{esc(c.text)}</strong>" if c.best else esc(c.text)
            cells.append(f"<{tag}{attr}>{text}</{tag}>")
        out.append("<tr>" + "".join(cells) + "</tr>")
    return out + ["</tbody></table>"]


def render_html(title: str, sections: list[Section], note: str) -> str:
    out = ["<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
           '<meta name="viewport" content="width=device-width, initial-scale=1">',
           f"<title>{esc(title)}</title>", f"<style>{CSS}</style>", "</head>", "<body>",
           f"<h1>{esc(title)}</h1>", f"<p>{esc(note)}</p>", "<nav><ol>"]
    out += [f'<li><a href="#{s.anchor}">{esc(s.title)}</a></li>' for s in sections]
    out.append("</ol></nav>")
    for section in sections:
        out += [f'<section id="{section.anchor}">', f"<h2>{esc(section.title)}</h2>"]
        for block in section.blocks:
            if isinstance(block, Para):
                out.append(f"<p>{esc(block.text)}</p>")
            elif isinstance(block, Absent):
                out.append(f'<p class="absent">absent: {esc(block.reason)}</p>')
            elif isinstance(block, Items):
                out.append("<ul>" + "".join(f"<li>{esc(i)}</li>" for i in block.items) + "</ul>")
            elif isinstance(block, Sub):
                out.append(f"<h3>{esc(block.title)}</h3>")
            elif isinstance(block, Table) and not block.rows:
                out.append(f'<p class="absent">absent: no values for '
                           f"{esc(block.caption or block.headers[0])}</p>")
            elif isinstance(block, Table):
                out += _html_table(block)
            elif isinstance(block, Figure):
                data = base64.b64encode(block.png).decode("ascii")
                out.append(f'<figure><img alt="{esc(block.alt)}" src="data:image/png;base64,{data}">'
                           f"<figcaption>{esc(block.alt)}</figcaption></figure>")
            elif isinstance(block, SideBySide):
                out += ['<div class="sample">', f"<h3>{esc(block.title)}</h3>",
                        f'<div class="prompt">{esc(block.prompt)}</div>', '<div class="replies">']
                out += [f'<div class="reply"><h4>{esc(m)}</h4><div>{esc(r)}</div></div>'
                        for m, r in block.replies]
                out += ["</div>", "</div>"]
        out.append("</section>")
    out += ["</body>", "</html>"]
    return "\n".join(out) + "\n"
