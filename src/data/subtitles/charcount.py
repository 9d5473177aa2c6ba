"""How many characters of a text fall in a regex character class, counted with numpy.

The script, case and language checks count letters of a class in a few thousand characters per file,
`sum(map(len, rx.findall(text)))` for each of a dozen classes. A lookup table over the Basic
Multilingual Plane, built once from the same regex, counts them in one vectorized gather instead;
a text with a character beyond that plane (an emoji) is counted by the regex as before.
"""

from __future__ import annotations

import re
from functools import cache

import numpy as np

_BMP_SIZE = 0x10000


def bmp_points(text: str) -> np.ndarray | None:
    """The text's code points, or None when one lies beyond the BMP (the tables do not cover it)."""
    # surrogatepass: a lone surrogate (possible in a str) is a code point below 0x10000 like any other
    points = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
    if points.size and int(points.max()) >= _BMP_SIZE:
        return None
    return points


@cache
def _every_bmp_char() -> str:
    return "".join(map(chr, range(_BMP_SIZE)))


class CharClass:
    """Counts the characters matched by `runs`, a pattern of the form `[...]+`."""

    def __init__(self, runs: re.Pattern[str]) -> None:
        self.runs = runs
        self._table: np.ndarray | None = None

    @property
    def table(self) -> np.ndarray:
        """Whether each BMP code point is in the class, from the pattern itself (built on first use)."""
        if self._table is None:
            table = np.zeros(_BMP_SIZE, dtype=bool)
            for m in self.runs.finditer(_every_bmp_char()):
                table[m.start():m.end()] = True
            self._table = table
        return self._table

    def count(self, text: str, points: np.ndarray | None) -> int:
        """Characters of `text` in the class; `points` is `bmp_points(text)`."""
        if points is None:
            return sum(map(len, self.runs.findall(text)))
        return int(np.count_nonzero(self.table[points]))
