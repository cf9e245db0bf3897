"""bionas_bench: a tabular benchmark for knowledge-guided NAS on genomic sequences.

Public face (see DESIGN in the README)::

    import bionas_bench as bb
    space = bb.get_space("bionas-conv1d")
    K = bb.knowledge.knowledge_dissimilarity(filters, motifs)
    oracle = bb.BootstrapOracle(bb.open_store(PATH), lam=1.0, seed=0)
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("bionas-bench")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"

from bionas_bench import controllers, knowledge, scoring  # noqa: E402
from bionas_bench.errors import BionasError  # noqa: E402
from bionas_bench.oracle import BootstrapOracle  # noqa: E402
from bionas_bench.space import ModelSpace, get_space, list_spaces  # noqa: E402
from bionas_bench.store import Store, open_store  # noqa: E402
from bionas_bench.sweep import load_results, load_sweep_config, plan_sweep, run_sweep  # noqa: E402

__all__ = [
    "BionasError",
    "BootstrapOracle",
    "ModelSpace",
    "Store",
    "__version__",
    "controllers",
    "get_space",
    "knowledge",
    "list_spaces",
    "load_results",
    "load_sweep_config",
    "open_store",
    "plan_sweep",
    "run_sweep",
    "scoring",
]
