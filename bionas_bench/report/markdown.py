"""Small Markdown helpers: tables and number formatting for the report."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any


def fmt(value: Any, digits: int = 3) -> str:
    """A number with ``digits`` significant digits (``-`` for NaN), other values as str."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        return f"{value:.{digits}g}"
    return str(value)


def with_ci(mean: float, lo: float, hi: float, decimals: int = 1) -> str:
    """``mean [lo, hi]`` with fixed decimals (``-`` parts for NaN)."""
    if math.isnan(mean):
        return "-"
    if math.isnan(lo) or math.isnan(hi):
        return f"{mean:.{decimals}f}"
    return f"{mean:.{decimals}f} [{lo:.{decimals}f}, {hi:.{decimals}f}]"


def pvalue(p: float) -> str:
    if math.isnan(p):
        return "-"
    return "< 1e-12" if p < 1e-12 else f"{p:.2g}"


def table(header: Sequence[str], rows: Sequence[Sequence[Any]], align: str | None = None) -> str:
    """A GitHub-flavoured Markdown table; ``align`` is one of l/r/c per column."""
    align = align or "l" + "r" * (len(header) - 1)
    marks = {"l": ":---", "r": "---:", "c": ":---:"}
    lines = [
        "| " + " | ".join(str(h) for h in header) + " |",
        "| " + " | ".join(marks[a] for a in align) + " |",
    ]
    for row in rows:
        lines.append("| " + " | ".join(str(cell).replace("|", "\\|") for cell in row) + " |")
    return "\n".join(lines)
