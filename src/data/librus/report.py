"""The clean_librus report: report.json (everything) and report.md (readable tables)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from src.atomic_io import write_text_atomic

if TYPE_CHECKING:
    from src.data.librus.clean import CleanTotals


def write_report(totals: CleanTotals, report_dir: Path, manifest_rows: int,
                 config: dict[str, Any]) -> dict[str, Any]:
    chars_in = sum(a["chars_in"] for a in totals.authors.values())
    chars_extracted = sum(a["chars_extracted"] for a in totals.authors.values())
    chars_out = sum(a["chars_out"] for a in totals.authors.values())
    report = {
        "totals": {
            "manifest_rows": manifest_rows, "documents": len(totals.documents),
            "dropped": len(totals.dropped), "chars_in": chars_in,
            "chars_extracted": chars_extracted, "chars_out": chars_out,
        },
        "rules": totals.rules,
        "authors": totals.authors,
        "dropped": totals.dropped,
        "documents": totals.documents,
        "config": config,
    }
    # Nothing lost silently: every manifest row is a document or a dropped entry.
    accounted = len(totals.documents) + len(totals.dropped)
    if accounted != manifest_rows:
        raise RuntimeError(f"clean_librus lost track of pages: {accounted} accounted, {manifest_rows} listed")
    report_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(report_dir / "report.json", json.dumps(report, ensure_ascii=False, indent=2))
    write_text_atomic(report_dir / "report.md", render_markdown(report))
    return report


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    def cell(value: Any) -> str:
        text = f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else str(value)
        return text.replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return lines


def render_markdown(report: dict[str, Any]) -> str:
    t = report["totals"]
    lines = [
        "# clean_librus report", "",
        f"{t['manifest_rows']} manifest rows: {t['documents']} documents written, {t['dropped']} dropped. "
        f"Characters: {t['chars_in']:,} in (pages with markup), {t['chars_extracted']:,} extracted, "
        f"{t['chars_out']:,} out.", "",
        "## Rules", "",
    ]
    lines += _table(["rule", "matches", "chars removed"],
                    [[name, c["matches"], c["chars_removed"]] for name, c in report["rules"].items()])
    lines += ["", "## Authors", ""]
    lines += _table(
        ["author", "documents", "chars in", "chars extracted", "chars out", "out / extracted"],
        [[a, c["documents"], c["chars_in"], c["chars_extracted"], c["chars_out"],
          f"{c['chars_out'] / c['chars_extracted']:.1%}" if c["chars_extracted"] else "-"]
         for a, c in sorted(report["authors"].items())],
    )
    lines += ["", "## Dropped pages", ""]
    if report["dropped"]:
        lines += _table(["stage", "url", "author", "title", "reason"],
                        [[d["stage"], d["url"], d["author"], d["title"], d["reason"]] for d in report["dropped"]])
    else:
        lines.append("None.")
    lines += ["", "## Documents", ""]
    lines += _table(["doc_id", "author", "title", "format", "chars in", "chars out", "reflowed", "mojibake"],
                    [[d["doc_id"][:12], d["author"], d["title"], d["format"], d["chars_in"], d["chars_out"],
                      d["reflowed"], d["mojibake_fixed"] or ""] for d in report["documents"]])
    return "\n".join(lines) + "\n"
