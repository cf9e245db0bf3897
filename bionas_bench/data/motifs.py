"""Position weight matrices (motifs) and where they come from.

A :class:`Motif` is a named ``(length, 4)`` matrix of base probabilities in A, C, G, T
order, each row summing to 1. Sources: the ENCODE motif text format used by the
original BioNAS data, JASPAR / MEME files through Biopython, and the JASPAR database
shipped with pyjaspar (offline).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bionas_bench.errors import DataError

BASES = "ACGT"


@dataclass(frozen=True, eq=False)
class Motif:
    """A named position weight matrix with base order A, C, G, T."""

    name: str
    pwm: np.ndarray
    source: str = ""

    def __post_init__(self) -> None:
        pwm = np.asarray(self.pwm, dtype=np.float64)
        if pwm.ndim != 2 or pwm.shape[1] != 4 or pwm.shape[0] == 0:
            raise DataError(f"motif {self.name!r} must be a (length, 4) matrix, got shape {pwm.shape}")
        if np.any(pwm < 0) or not np.all(np.isfinite(pwm)):
            raise DataError(f"motif {self.name!r} has negative or non-finite probabilities")
        sums = pwm.sum(axis=1, keepdims=True)
        if np.any(sums <= 0):
            raise DataError(f"motif {self.name!r} has an all-zero position; every row needs mass")
        pwm = pwm / sums
        pwm.setflags(write=False)
        object.__setattr__(self, "pwm", pwm)

    @property
    def length(self) -> int:
        return int(self.pwm.shape[0])
