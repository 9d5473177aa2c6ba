"""The report card's figures as PNG bytes (matplotlib, Agg), identical bytes for identical input.

Each function takes the plain data of one results.json series and returns PNG bytes, or None when
there is nothing to draw. Figures are made with `matplotlib.figure.Figure` and the Agg canvas, never
pyplot, so no global figure state or GUI backend is touched. Determinism: the default style is
applied inside a style context (a user's matplotlibrc cannot change the bytes), the DPI is fixed and
the PNG carries no "Software" text (the matplotlib version); Agg writes no date into a PNG.
matplotlib is imported lazily: importing the report card costs nothing until a figure is drawn.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from typing import Any

DPI = 100
STYLE = {"figure.dpi": DPI, "savefig.dpi": DPI, "font.size": 9, "axes.grid": True,
         "grid.alpha": 0.3, "axes.spines.top": False, "axes.spines.right": False,
         "figure.autolayout": False, "svg.hashsalt": "report-card"}
# The product limit on the time to a first utterance (background notes on on-device chat: ~2 s).
FIRST_UTTERANCE_LIMIT_MS = 2000.0


def _finite_pairs(points: Any) -> list[tuple[float, float]]:
    """[[step, value], ...] with malformed or non-finite points left out (they cannot be drawn)."""
    out = []
    for p in points if isinstance(points, Sequence) else ():
        if (isinstance(p, Sequence) and len(p) == 2 and all(isinstance(v, (int, float)) for v in p)
                and all(math.isfinite(v) for v in p)):
            out.append((float(p[0]), float(p[1])))
    return out


def _finite(values: Any) -> list[float]:
    return [float(v) for v in (values if isinstance(values, Sequence) else ())
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)]


def _draw(nrows: int, ncols: int, size: tuple[float, float], paint) -> bytes:
    """Make a figure, let `paint(fig, axes)` draw on it, return it as PNG bytes."""
    import matplotlib.style
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    with matplotlib.style.context(["default", STYLE]):
        fig = Figure(figsize=size, dpi=DPI)
        FigureCanvasAgg(fig)
        axes = fig.subplots(nrows, ncols, squeeze=False).ravel().tolist()
        paint(fig, axes)
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    return buf.getvalue()


def loss_curves(curves: Mapping[str, Any]) -> bytes | None:
    """Training and validation loss of every model, one panel per model."""
    models = [(m, c) for m, c in curves.items() if isinstance(c, Mapping)
              and any(_finite_pairs(c.get(k)) for k in ("train", "val"))]
    if not models:
        return None

    def paint(fig, axes):
        for ax, (model, c) in zip(axes, models, strict=True):
            for split, style in (("train", "-"), ("val", "o-")):
                pts = _finite_pairs(c.get(split))
                if pts:
                    ax.plot(*zip(*pts, strict=True), style, markersize=3, linewidth=1.2, label=split)
            ax.set_title(model)
            ax.set_xlabel("step")
            ax.set_ylabel("loss (nats/token)")
            ax.legend()

    return _draw(1, len(models), (3.6 * len(models), 3.0), paint)


def reply_lengths(lengths: Mapping[str, Any]) -> bytes | None:
    """Histogram of reply lengths in tokens, one outline per model on shared bins."""
    data = [(m, _finite(v)) for m, v in lengths.items()]
    data = [(m, v) for m, v in data if v]
    if not data:
        return None
    top = max(max(v) for _, v in data)
    step = max(1.0, math.ceil((top + 1) / 30))  # at most ~30 bins of whole tokens
    bins = [i * step for i in range(int(math.ceil((top + 1) / step)) + 1)]

    def paint(fig, axes):
        ax = axes[0]
        for model, values in data:
            ax.hist(values, bins=bins, histtype="step", linewidth=1.5, label=f"{model} (n={len(values)})")
        ax.set_xlabel("reply length (tokens)")
        ax.set_ylabel("replies")
        ax.legend()

    return _draw(1, 1, (7.0, 3.2), paint)


def kto_panel(key: str) -> str:
    """Which panel of the KTO figure a series goes to: figures of one scale share a panel."""
    if "drift" in key or key == "kl" or key.startswith("kl_"):
        return "drift and KL"
    if "reward" in key and "accuracy" not in key:
        return "rewards"
    if key.endswith(("_rate", "accuracy")) or key.startswith("distinct"):
        return "rates (0-1)"
    return key


def kto_series(series: Mapping[str, Any]) -> bytes | None:
    """KTO rewards, drift/KL, rates and any other figure over training steps, three panels a row."""
    curves = {k: _finite_pairs(v) for k, v in series.items()}
    curves = {k: v for k, v in curves.items() if v}
    if not curves:
        return None
    panels: dict[str, list[str]] = {}
    for key in curves:
        panels.setdefault(kto_panel(key), []).append(key)
    ncols = min(3, len(panels))
    nrows = math.ceil(len(panels) / ncols)

    def paint(fig, axes):
        for ax in axes[len(panels):]:
            ax.set_visible(False)
        for ax, (title, keys) in zip(axes, panels.items(), strict=False):
            for key in keys:
                ax.plot(*zip(*curves[key], strict=True), "o-", markersize=2.5, linewidth=1.2, label=key)
            if title in ("rewards", "drift and KL"):
                ax.axhline(0.0, color="#888", linewidth=0.8)
            ax.set_title(title)
            ax.set_xlabel("step")
            if len(keys) > 1:
                ax.legend(fontsize=7)

    return _draw(nrows, ncols, (3.6 * ncols, 2.9 * nrows), paint)


def reranker_scores(scores: Mapping[str, Any]) -> bytes | None:
    """Reranker score distributions: positives against each kind of negative, shared bins."""
    data = [(k, _finite(v)) for k, v in scores.items()]
    data = [(k, v) for k, v in data if v]
    if not data:
        return None
    low = min(min(v) for _, v in data)
    high = max(max(v) for _, v in data)
    if high <= low:
        high = low + 1.0
    bins = [low + (high - low) * i / 40 for i in range(41)]

    def paint(fig, axes):
        ax = axes[0]
        for kind, values in data:
            width = 2.2 if kind == "positive" else 1.2
            ax.hist(values, bins=bins, histtype="step", density=True, linewidth=width,
                    label=f"{kind} (n={len(values)})")
        ax.set_xlabel("reranker score")
        ax.set_ylabel("density")
        ax.legend(fontsize=8)

    return _draw(1, 1, (7.0, 3.2), paint)


LATENCY_MS = (("ttft_ms", "first token"), ("first_phrase_ms", "first phrase"),
              ("reranked_turn_ms", "reranked turn"))


def latency(per_model: Mapping[str, Any]) -> bytes | None:
    """Bars of the times to first token / phrase / reranked turn per model, and tokens/s beside."""
    models = [m for m, v in per_model.items() if isinstance(v, Mapping)]
    kinds = [(k, label) for k, label in LATENCY_MS
             if any(_finite([per_model[m].get(k)]) for m in models)]
    speed = [(m, _finite([per_model[m].get("tokens_per_s")])) for m in models]
    speed = [(m, v[0]) for m, v in speed if v]
    if not kinds and not speed:
        return None

    def paint(fig, axes):
        ax = axes[0]
        width = 0.8 / max(1, len(kinds))
        for i, (key, label) in enumerate(kinds):
            xs, ys = [], []
            for j, m in enumerate(models):
                v = _finite([per_model[m].get(key)])
                if v and v[0] > 0:  # a log axis has no room for 0
                    xs.append(j + (i - (len(kinds) - 1) / 2) * width)
                    ys.append(v[0])
            ax.bar(xs, ys, width=width, label=label)
        ax.axhline(FIRST_UTTERANCE_LIMIT_MS, color="#b00", linestyle="--", linewidth=1,
                   label="2 s first-utterance limit")
        # First tokens take milliseconds, reranked turns seconds: a log axis shows both.
        ax.set_yscale("log")
        ax.set_ylim(top=FIRST_UTTERANCE_LIMIT_MS * 20)
        ax.set_xticks(range(len(models)), models)
        ax.set_ylabel("ms (batch 1, log scale)")
        ax.legend(fontsize=7, loc="upper left", ncols=2)
        ax2 = axes[1]
        ax2.bar([m for m, _ in speed], [v for _, v in speed], color="#4a7")
        ax2.set_ylabel("tokens/s (batch 1)")

    return _draw(1, 2, (8.0, 3.2), paint)
