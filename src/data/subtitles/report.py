"""The `clean_subs` report: report.json (everything) and report.md (what a person reads)."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from src.atomic_io import write_text_atomic
from src.config.sections.clean_subs import CleanSubsConfig
from src.data.subtitles.file_cleaner import FileResult


@dataclass
class FileRecord:
    """One manifest row and what became of it: status "kept" or "dropped" with a reason.

    `lines_out` is counted on `attach`, so the stage may then let go of the result's utterances
    (they are spooled to disk) and still report and dedup by line count.
    """

    file_id: str
    row: dict[str, Any]
    status: str = "kept"
    reason: str | None = None
    duplicate_of: str | None = None
    similarity: float | None = None
    result: FileResult | None = None
    drop_error: str | None = None
    lines_out: int = 0

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> FileRecord:
        rec = cls(file_id=str(row["file_id"]), row=row)
        if row.get("status") != "ok":
            rec.drop(f"upstream:{row.get('status')}")
        return rec

    def drop(
        self, reason: str, duplicate_of: str | None = None, similarity: float | None = None,
        error: str | None = None,
    ) -> None:
        self.status, self.reason = "dropped", reason
        self.duplicate_of, self.similarity = duplicate_of, similarity
        self.drop_error = error

    def attach(self, result: FileResult) -> None:
        self.result = result
        self.lines_out = len(result.utterances)
        if result.status != "ok":
            self.drop(result.status)

    @property
    def reason_key(self) -> str:
        """The summary key: the reason without per-file detail ("duplicate:near", "language:uk")."""
        return self.reason or "kept"

    @property
    def error(self) -> str | None:
        if self.result is not None and self.result.error:
            return self.result.error
        return self.drop_error or self.row.get("error")

    def to_dict(self) -> dict[str, Any]:
        res = self.result
        out: dict[str, Any] = {
            "file_id": self.file_id, "source": self.row.get("source"), "member": self.row.get("member"),
            "title": self.row.get("title"), "language_hint": self.row.get("language"),
            "status": self.status, "reason": self.reason, "error": self.error,
            "duplicate_of": self.duplicate_of, "similarity": self.similarity,
        }
        if res is not None:
            out.update(
                encoding=res.encoding, parser=res.parser, language=res.language,
                language_share=res.language_share, all_caps=res.all_caps, bytes=res.bytes,
                cues_in=res.cues_in, lines_out=self.lines_out, cue_counts=res.cue_counts,
                rules=dict(res.rules), warnings=res.warnings,
            )
            hint = self.row.get("language")
            if hint and res.language not in ("unknown", hint):
                out["warnings"] = [*res.warnings, f"language hint {hint} but detected {res.language}"]
        return out


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    def cell(v: Any) -> str:
        return str(v).replace("|", "\\|").replace("\n", " ") if v is not None else ""

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines.extend("| " + " | ".join(cell(v) for v in row) + " |" for row in rows)
    return lines


def render_markdown(
    files: list[dict[str, Any]], rules: Counter[str], totals: dict[str, Any], notes: list[str],
    max_warnings: int,
) -> str:
    dropped = Counter(f["reason"] for f in files if f["status"] != "kept")
    md = ["# clean_subs report", ""]
    md += _table(["total", "value"], [[k, v] for k, v in totals.items()])
    md += ["", *[f"- note: {n}" for n in notes], "", "## Rules (times fired)", ""]
    md += _table(["rule", "count"], [[k, v] for k, v in sorted(rules.items(), key=lambda kv: -kv[1])])
    md += ["", "## Dropped files by reason", ""]
    md += _table(["reason", "files"], [[k, v] for k, v in dropped.most_common()]) if dropped else ["none"]
    md += ["", "## Files", ""]
    md += _table(
        ["file_id", "member", "status", "reason", "encoding", "parser", "language", "cues in",
         "lines out", "error"],
        [[f["file_id"], f["member"], f["status"],
          (f["reason"] or "") + (f" of {f['duplicate_of']} ({f['similarity']})" if f["duplicate_of"] else ""),
          f.get("encoding"), f.get("parser"), f.get("language"), f.get("cues_in"), f.get("lines_out"),
          f["error"]] for f in files],
    )
    warned = [f for f in files if f.get("warnings")]
    if warned:
        md += ["", "## Warnings", ""]
        for f in warned:
            shown = f["warnings"][:max_warnings]
            more = len(f["warnings"]) - len(shown)
            md.append(f"- `{f['file_id']}`: " + "; ".join(shown) + (f" (+{more} more)" if more else ""))
    return "\n".join(md) + "\n"


def write_report(
    report_dir: Path, records: list[FileRecord], rules: Counter[str], totals: dict[str, Any],
    notes: list[str], cfg: CleanSubsConfig,
) -> None:
    report_dir.mkdir(parents=True, exist_ok=True)
    files = [rec.to_dict() for rec in sorted(records, key=lambda r: r.file_id)]
    dropped = Counter(f["reason"] for f in files if f["status"] != "kept")
    payload = {"totals": totals, "notes": notes, "rules": dict(sorted(rules.items())),
               "dropped": dict(dropped), "files": files}
    write_text_atomic(report_dir / "report.json", json.dumps(payload, indent=2, ensure_ascii=False))
    write_text_atomic(report_dir / "report.md",
                  render_markdown(files, rules, totals, notes, cfg.report_max_warnings))
