"""bionas_bench: a tabular benchmark for knowledge-guided NAS on genomic sequences.

Public face (the README shows each part at work)::

    import bionas_bench as bb
    space = bb.get_space("bionas-conv1d")
    K = bb.knowledge.knowledge_dissimilarity(filters, motifs)
    oracle = bb.BootstrapOracle(bb.open_store(PATH), lam=1.0, seed=0)
    run = bb.run_sweep(bb.load_sweep_config("demo"), out="results/demo")
    bb.train.run_farm(...)                # every submodule is reachable as bb.<name>
"""

import importlib as _importlib
from importlib.metadata import PackageNotFoundError as _PackageNotFoundError
from importlib.metadata import version as _version
from typing import TYPE_CHECKING as _TYPE_CHECKING

try:
    __version__ = _version("bionas-bench")
except _PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"

# The names below are imported on first use (PEP 562), not here: the command line imports
# this package before it can handle Ctrl-C, and `bionas-bench --help` needs none of
# pandas, scipy or torch, which the modules behind these names bring in.
_LAZY = {
    "BionasError": "bionas_bench.errors",
    "BootstrapOracle": "bionas_bench.oracle",
    "ModelSpace": "bionas_bench.space",
    "get_space": "bionas_bench.space",
    "list_spaces": "bionas_bench.space",
    "Store": "bionas_bench.store",
    "open_store": "bionas_bench.store",
    "load_results": "bionas_bench.sweep",
    "load_sweep_config": "bionas_bench.sweep",
    "plan_sweep": "bionas_bench.sweep",
    "run_sweep": "bionas_bench.sweep",
}
_SUBMODULES = (
    "agreement",
    "controllers",
    "data",
    "knowledge",
    "oracle",
    "report",
    "scoring",
    "space",
    "store",
    "sweep",
    "train",
)

if _TYPE_CHECKING:
    from bionas_bench import (
        agreement,
        controllers,
        data,
        knowledge,
        oracle,
        report,
        scoring,
        space,
        store,
        sweep,
        train,
    )
    from bionas_bench.errors import BionasError
    from bionas_bench.oracle import BootstrapOracle
    from bionas_bench.space import ModelSpace, get_space, list_spaces
    from bionas_bench.store import Store, open_store
    from bionas_bench.sweep import load_results, load_sweep_config, plan_sweep, run_sweep


def __getattr__(name: str) -> object:
    """Import a public name on first use and keep it (later lookups skip this function)."""
    if name in _SUBMODULES:
        value = _importlib.import_module(f"bionas_bench.{name}")
    elif name in _LAZY:
        value = getattr(_importlib.import_module(_LAZY[name]), name)
    else:
        raise AttributeError(f"module 'bionas_bench' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    """The public names (``__all__``), whether or not they were imported yet."""
    return sorted(__all__)


__all__ = [
    "BionasError",
    "BootstrapOracle",
    "ModelSpace",
    "Store",
    "__version__",
    "agreement",
    "controllers",
    "data",
    "get_space",
    "knowledge",
    "list_spaces",
    "load_results",
    "load_sweep_config",
    "open_store",
    "oracle",
    "plan_sweep",
    "report",
    "run_sweep",
    "scoring",
    "space",
    "store",
    "sweep",
    "train",
]
