"""summary.md: the suite's results.json as text a person reads (and a closing note can quote)."""

from __future__ import annotations

from typing import Any

PROFILE_TOP = 5
SKIP_KEYS = {"status", "aim", "headline", "error", "traceback", "log_tail", "seconds", "limit_s"}


def fmt(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, float):
        if value != value:  # NaN
            return "nan"
        if abs(value) >= 1e5:
            return f"{value:,.0f}"
        if abs(value) >= 100:
            return f"{value:.1f}"
        return f"{value:.4g}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value).replace("|", "/").replace("\n", " ")


def table(rows: list[dict[str, Any]]) -> list[str]:
    columns: list[str] = []
    for row in rows:
        columns.extend(k for k in row if k not in columns and not isinstance(row[k], (dict, list)))
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(fmt(row.get(c, "")) for c in columns) + " |" for row in rows]
    return lines


def part_details(entry: dict[str, Any], prefix: str = "") -> list[str]:
    lines: list[str] = []
    for key, value in entry.items():
        if key in SKIP_KEYS and not prefix:
            continue
        key = prefix + key
        if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            lines += ["", f"{key}:", "", *table(value), ""]
        elif isinstance(value, dict):
            inner = ", ".join(f"{k} {fmt(v)}" for k, v in value.items() if not isinstance(v, (dict, list)))
            if inner:
                lines.append(f"- {key}: {inner}")
            if not prefix:  # one level down: its tables and dicts
                lines += part_details({k: v for k, v in value.items() if isinstance(v, (dict, list))},
                                      prefix=f"{key}.")
        elif isinstance(value, list):
            lines.append(f"- {key}: {', '.join(fmt(v) for v in value)}")
        else:
            lines.append(f"- {key}: {fmt(value)}")
    return lines


def profile_lines(parts: dict[str, Any]) -> list[str]:
    """A line per profiled part under the table, beside the aims: where the step's time goes."""
    lines: list[str] = []
    for name, entry in parts.items():
        prof = entry.get("profile")
        if isinstance(prof, dict) and prof.get("top_ops"):
            top = ", ".join(f"{op['name']} {op['share']:.0%}" for op in prof["top_ops"][:PROFILE_TOP])
            lines.append(
                f"- {name}: {prof.get('model', '')} at micro-batch {prof.get('micro_batch')} "
                f"({'compiled' if prof.get('compiled') else 'eager'}, {prof.get('precision')}, "
                f"{prof.get('device')}): {prof.get('bottleneck')}. Step {fmt(prof.get('step_ms'))} ms "
                f"(trainer {fmt(prof.get('trainer_ms_per_step'))} ms), ops {fmt(prof.get('op_ms_per_step'))} "
                f"ms, matmul-like {prof.get('matmul_share', 0):.0%}"
                + (f", GPU busy {prof['busy_share']:.0%}" if "busy_share" in prof else "")
                + f".\n  Top by {prof.get('ranked_by')} per step: {top}")
        elif entry.get("profile_error"):
            lines.append(f"- {name}: no profile ({fmt(entry['profile_error'])})")
    return ["", "Profile (where a step's time goes; the full table is in the part's section):", "", *lines] \
        if lines else []


def render_summary(results: dict[str, Any]) -> str:
    suite, parts = results["suite"], results["parts"]
    lines = ["# GPU suite" + (" (dry run: tiny shapes on the CPU)" if suite.get("dry_run") else ""), "",
             f"Started {suite.get('started')} on {suite.get('host')}, Python {suite.get('python')}, "
             f"{suite.get('elapsed_s', 0):.0f} s of a {suite.get('budget_s', 0):.0f} s budget, parts run "
             f"{'each in its own process' if suite.get('isolate') == 'process' else 'in one process'}.", "",
             "| part | status | seconds | result | aim |", "|---|---|---|---|---|"]
    for name, entry in parts.items():
        result = entry.get("headline") or entry.get("error") or ""
        lines.append(f"| {name} | {entry['status']} | {fmt(entry.get('seconds', ''))} | {fmt(result)} | "
                     f"{fmt(entry.get('aim', ''))} |")
    lines += profile_lines(parts)
    for name, entry in parts.items():
        if entry["status"] == "pending":
            continue
        lines += ["", f"## {name}: {entry['status']}", ""]
        if entry.get("error"):
            lines.append(f"- error: {fmt(entry['error'])}")
        lines += part_details(entry)
        tail = entry.get("traceback") or entry.get("log_tail")
        if tail and entry["status"] != "ok":
            lines += ["", "```", tail.strip()[-1200:], "```"]
    return "\n".join(lines) + "\n"
