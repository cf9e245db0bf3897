"""Lists of integer indices as text: ``"0-9,46"`` <-> sorted unique ids.

The farm's ``--archs`` (architecture ids) and ``--replicates`` (replicate indices)
take the same syntax, and ``store info`` / ``train`` print index sets back in it, so
the parser and the formatter live together and round-trip.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from bionas_bench.errors import BionasError

__all__ = ["format_ids", "parse_ids"]


def parse_ids(
    text: str,
    size: int,
    *,
    option: str,
    what: str,
    hint: str,
    error: type[BionasError],
    context: str = "",
) -> np.ndarray:
    """Parse ``"0-9,46"`` into sorted unique int64 ids, each checked against ``0..size-1``.

    Args:
        text: comma-separated ids and inclusive ranges ``lo-hi``.
        size: how many valid ids there are.
        option: the option named in error messages (e.g. ``"--archs"``).
        what: what one id is, for messages (e.g. ``"architecture id"``).
        hint: the fix for unreadable text (e.g. ``"use ids and ranges like 0-9,46"``).
        error: the exception type raised on bad input.
        context: appended to the out-of-range message (e.g. where ``size`` comes from).

    Raises ``error`` naming the option and the fix when a part cannot be read, when
    nothing is named, or when an id is out of range.
    """
    ids: set[int] = set()
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        try:
            ids.update(_read_part(part))
        except _Backwards as exc:
            raise error(f"{option} {text!r}: {exc}") from None
        except ValueError:
            raise error(f"{option} {text!r}: cannot read {part!r}; {hint}") from None
    if not ids:
        raise error(f"{option} {text!r} names no {what}; {hint}")
    bad = [i for i in sorted(ids) if i >= size]
    if bad:
        raise error(f"{option}: {what} {bad[0]} is out of range; use 0..{size - 1}{context}")
    return np.array(sorted(ids), dtype=np.int64)


class _Backwards(ValueError):
    """A range ``lo-hi`` with ``hi < lo``."""


def _read_part(part: str) -> range:
    """``"3"`` -> range(3, 4); ``"2-5"`` -> range(2, 6); ValueError for anything else."""
    if "-" in part:
        lo, hi = (int(x) for x in part.split("-", 1))
    else:
        lo = hi = int(part)
    if lo < 0 or hi < 0:
        raise ValueError(part)
    if hi < lo:
        raise _Backwards(f"range {part!r} ends before it starts; write {hi}-{lo}")
    return range(lo, hi + 1)


def format_ids(ids: Iterable[int]) -> str:
    """The compact text of ``ids`` (``[0, 1, 2, 3, 7]`` -> ``"0-3,7"``); ``""`` for none."""
    runs: list[list[int]] = []
    for value in sorted({int(i) for i in ids}):
        if runs and value == runs[-1][1] + 1:
            runs[-1][1] = value
        else:
            runs.append([value, value])
    return ",".join(str(lo) if lo == hi else f"{lo}-{hi}" for lo, hi in runs)
