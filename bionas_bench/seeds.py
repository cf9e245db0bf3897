"""Seeds to random generators, checked: the one way controllers and oracles make their own.

Determinism is a rule of the benchmark: every random choice comes from a generator built
from an explicit seed (or a generator the caller passes in). ``None`` -- which numpy
would fill from the operating system's entropy -- is refused, so a run cannot become
unrepeatable by omission.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from bionas_bench.errors import BionasError


def check_seed(seed: Any, error: type[BionasError], owner: str) -> None:
    """Raise ``error`` naming ``owner`` unless ``seed`` is an integer >= 0 or a numpy Generator.

    Apart from :func:`rng_from_seed` so that a list of seeds can be checked before any
    run is built (``controllers.create_runs``).
    """
    if isinstance(seed, np.random.Generator):
        return
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise error(f"{owner}: seed must be an integer >= 0 or a numpy Generator, got {seed!r}")


def rng_from_seed(seed: Any, error: type[BionasError], owner: str) -> np.random.Generator:
    """``np.random.default_rng(seed)`` for an integer ``seed >= 0``; a Generator is used as is.

    Anything else raises ``error`` naming ``owner`` (e.g. the controller or the oracle).
    """
    check_seed(seed, error, owner)
    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
