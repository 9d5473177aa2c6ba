"""The report card's figures: PNG bytes or None, nothing drawn from garbage, identical bytes for
identical input, no matplotlib version or date inside the file."""

from __future__ import annotations

import struct
import zlib

import pytest

from src.eval import report_plots as plots
from tests.eval.fixtures_results import full_results

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def chunks(png: bytes) -> list[tuple[bytes, bytes]]:
    """(type, data) of every chunk, each CRC checked: a well-formed PNG stream."""
    assert png.startswith(PNG_SIGNATURE)
    out, pos = [], len(PNG_SIGNATURE)
    while pos < len(png):
        (length,) = struct.unpack(">I", png[pos:pos + 4])
        kind, data = png[pos + 4:pos + 8], png[pos + 8:pos + 8 + length]
        (crc,) = struct.unpack(">I", png[pos + 8 + length:pos + 12 + length])
        assert zlib.crc32(kind + data) == crc
        out.append((kind, data))
        pos += 12 + length
    assert out[0][0] == b"IHDR" and out[-1][0] == b"IEND"
    return out


def figures() -> dict[str, bytes | None]:
    r = full_results()
    series = r["series"]
    return {"loss": plots.loss_curves(series["loss_curves"]),
            "lengths": plots.reply_lengths(series["reply_lengths"]),
            "kto": plots.kto_series(series["kto"]),
            "reranker": plots.reranker_scores(series["reranker_scores"]),
            "latency": plots.latency(r["latency"])}


def test_every_figure_is_a_clean_deterministic_png():
    first, second = figures(), figures()
    for name, png in first.items():
        assert png is not None, name
        kinds = [k for k, _ in chunks(png)]
        assert not {b"tEXt", b"iTXt", b"zTXt", b"tIME"} & set(kinds), (name, kinds)
        assert b"matplotlib" not in png.lower()
        assert png == second[name], name


@pytest.mark.parametrize("draw, junk", [
    (plots.loss_curves, {"sft": {"train": [[0, float("nan")], "x", [1]], "val": None}, "kto": 3}),
    (plots.reply_lengths, {"sft": [], "kto": ["a", None, float("inf")]}),
    (plots.kto_series, {"kl": [[0, "a"]], "drift": "x"}),
    (plots.reranker_scores, {"positive": [], "swap": [True, None]}),
    (plots.latency, {"sft": {"ttft_ms": None, "tokens_per_s": "fast"}, "kto": 7}),
    (plots.latency, {}),
])
def test_nothing_drawable_gives_none(draw, junk):
    assert draw(junk) is None


def test_a_single_point_or_a_constant_still_draws():
    assert plots.reranker_scores({"positive": [0.5, 0.5]}) is not None
    assert plots.kto_series({"kl": [[0, 0.0]]}) is not None
    assert plots.latency({"sft": {"tokens_per_s": 12.0}}) is not None
    assert plots.latency({"sft": {"ttft_ms": 0.0, "first_phrase_ms": 5.0}}) is not None
