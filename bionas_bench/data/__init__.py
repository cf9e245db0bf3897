"""Data layer: motifs, simulated and FASTA datasets, one-hot encoding.

The names below are re-exported lazily, so importing one submodule (e.g.
``bionas_bench.data.motifs`` from knowledge scoring) does not pull in pandas.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Motif": "motifs",
    "MotifSpec": "motifs",
    "load_motifs": "motifs",
    "jaspar_motif": "motifs",
    "read_motif_file": "motifs",
    "Embedding": "simulate",
    "SimulationConfig": "simulate",
    "simulate": "simulate",
    "read_fasta": "fasta",
    "onehot": "fasta",
    "encode": "fasta",
    "decode": "fasta",
    "Dataset": "datasets",
    "build_dataset": "datasets",
    "load_dataset": "datasets",
    "list_datasets": "datasets",
    "find_bionas_pub_dir": "datasets",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"bionas_bench.data.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'bionas_bench.data' has no attribute {name!r}")
