"""The tokenizer report: density, exact round trip, atomic special tokens, unknown/byte-fallback rate."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from src.atomic_io import write_bytes_atomic, write_json_atomic
from src.tokenizers.base import SPECIAL_TOKENS, Tokenizer

# Texts that break careless tokenizers: each must come back byte for byte.
ROUNDTRIP_PROBES: dict[str, str] = {
    "newlines": "Первая строка.\nВторая.\n\n\nПосле пустых строк\n",
    "leading_and_runs_of_spaces": "   отступ,  два пробела,     пять;\tтабуляция ",
    "dashes": "— Да, — сказал он. — Нет – может быть - или ‒ так -- вот.",
    "quotes_and_ellipsis": "«Ёлка» и „лапки“ и ‘одиночные’… и ещё...",
    "french_in_russian": "Он сказал: «C'est la vie, mon cher, à bientôt!» и ушёл.",
    "german_in_russian": "Она читала «Die Leiden des jungen Werthers», Größe, Straße, Übermut.",
    "latin_in_russian": "Carthago delenda est, — повторял он; terra incognita.",
    "digits": "В 1861 году, 19 февраля, в 10:45, стоило 3,14 руб. (№ 7).",
    "special_tokens_inline": "<|system|>Ты помощник.<|end|><|user|>Привет<|end|><|assistant|>",
    "sentencepiece_space_mark": "▁ знак ▁▁ подчёркивания▁",
    "control_and_crlf": "строка\r\nвторая\x0bтретья\x00",
    "rare_characters": "ѣ ѳ і ѵ — старая орфография; эмодзи 😀; 漢字",
}


def special_tokens_atomic(tok: Tokenizer) -> dict[str, bool]:
    """Each special token alone and glued between letters encodes to exactly its own id."""
    out = {}
    for token in SPECIAL_TOKENS:
        i = tok.special_tokens[token]
        glued = tok.encode(f"а{token}б")
        out[token] = tok.encode(token) == [i] and glued.count(i) == 1 and tok.decode(glued) == (
            f"а{token}б")
    return out


def measure(tok: Tokenizer, texts: Iterable[str]) -> dict[str, Any]:
    """Tokens, chars, UTF-8 bytes, fallback tokens and exact round trips over `texts`."""
    n_docs = n_exact = n_chars = n_bytes = n_tokens = n_fallback = 0
    unknown: Counter[str] = Counter()
    for text in texts:
        ids = tok.encode_array(text)
        n_docs += 1
        n_exact += tok.decode(ids) == text
        n_chars += len(text)
        n_bytes += len(text.encode("utf-8", errors="surrogatepass"))
        n_tokens += len(ids)
        n_fallback += int(tok.fallback_mask(ids).sum())
        if hasattr(tok, "unknown_chars"):
            unknown.update(tok.unknown_chars(text))
    return {
        "docs": n_docs, "docs_roundtrip_exact": n_exact, "chars": n_chars, "bytes": n_bytes,
        "tokens": n_tokens, "fallback_tokens": n_fallback,
        "chars_per_token": n_chars / n_tokens if n_tokens else 0.0,
        "bytes_per_token": n_bytes / n_tokens if n_tokens else 0.0,
        "roundtrip_rate": n_exact / n_docs if n_docs else 0.0,
        "fallback_rate": n_fallback / n_tokens if n_tokens else 0.0,
        "unknown_chars": dict(unknown.most_common()),
    }


def tokenizer_report(
    tok: Tokenizer, heldout: list[str], heldout_is_training_text: bool, training: dict[str, Any]
) -> dict[str, Any]:
    probes = {}
    for name, text in ROUNDTRIP_PROBES.items():
        ids = tok.encode_array(text)
        probes[name] = {"exact": tok.decode(ids) == text,
                        "fallback_tokens": int(tok.fallback_mask(ids).sum())}
    atomic = special_tokens_atomic(tok)
    return {
        "kind": tok.kind,
        "vocab_size": tok.vocab_size,
        "eot_id": tok.eot_id,
        "special_tokens": dict(tok.special_tokens),
        "sha256": tok.sha256,
        "training": training,
        "heldout_is_training_text": heldout_is_training_text,
        "heldout": measure(tok, heldout),
        "roundtrip_probes": probes,
        "special_tokens_atomic": atomic,
    }


def report_metrics(report: dict[str, Any]) -> dict[str, float]:
    held = report["heldout"]
    return {
        "tokenizer.vocab_size": report["vocab_size"],
        "tokenizer.chars_per_token": held["chars_per_token"],
        "tokenizer.bytes_per_token": held["bytes_per_token"],
        "tokenizer.roundtrip_rate": held["roundtrip_rate"],
        "tokenizer.fallback_rate": held["fallback_rate"],
        "tokenizer.probes_exact_rate": sum(p["exact"] for p in report["roundtrip_probes"].values())
        / len(report["roundtrip_probes"]),
        "tokenizer.special_tokens_atomic": float(all(report["special_tokens_atomic"].values())),
    }


def render_markdown(report: dict[str, Any]) -> str:
    held = report["heldout"]
    source = "training text (no held-out documents)" if report["heldout_is_training_text"] else (
        "held-out documents")
    lines = [
        f"# Tokenizer report ({report['kind']}, vocab {report['vocab_size']})",
        "",
        f"Measured on {held['docs']} {source}: {held['chars']:,} chars, {held['bytes']:,} UTF-8 bytes.",
        "",
        "| measure | value |",
        "|---|---|",
        f"| chars per token | {held['chars_per_token']:.3f} |",
        f"| bytes per token | {held['bytes_per_token']:.3f} |",
        f"| exact round trip (documents) | {held['docs_roundtrip_exact']} / {held['docs']} |",
        f"| unknown / byte-fallback tokens | {held['fallback_tokens']:,} "
        f"({100 * held['fallback_rate']:.4f} %) |",
        "",
        "## Round-trip probes",
        "",
        "A char tokenizer cannot restore characters it never saw (they become <unk>): such probes",
        "fail by design and show their <unk> count.",
        "",
        *(f"- {name}: {'exact' if p['exact'] else 'NOT exact'}"
          + (f" ({p['fallback_tokens']} unknown/byte-fallback tokens)" if p["fallback_tokens"] else "")
          for name, p in report["roundtrip_probes"].items()),
        "",
        "## Special tokens",
        "",
        *(f"- `{t}` id {report['special_tokens'][t]}: {'atomic' if ok else 'NOT atomic'}"
          for t, ok in report["special_tokens_atomic"].items()),
    ]
    if held["unknown_chars"]:
        shown = ", ".join(f"{c!r}×{n}" for c, n in list(held["unknown_chars"].items())[:30])
        lines += ["", "## Characters outside the vocabulary", "", shown]
    return "\n".join(lines) + "\n"


def write_report(report: dict[str, Any], directory: Path) -> list[Path]:
    json_path, md_path = directory / "report.json", directory / "report.md"
    write_json_atomic(json_path, report)
    write_bytes_atomic(md_path, render_markdown(report).encode("utf-8"))
    return [json_path, md_path]
