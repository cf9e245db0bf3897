"""The command line's start: fast help, and the package's public names."""

from __future__ import annotations

import subprocess
import sys

import bionas_bench

HEAVY = ("torch", "pandas", "scipy", "zarr", "dask", "distributed", "matplotlib", "numba")


def test_help_loads_none_of_the_heavy_libraries():
    """`bionas-bench --help` and every command's parser import no heavy library: help is
    instant, and a Ctrl-C while the program starts meets main()'s handler."""
    script = (
        "import sys\n"
        "from bionas_bench.cli import build_parser\n"
        "build_parser()\n"
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_every_public_name_resolves():
    for name in bionas_bench.__all__:
        assert getattr(bionas_bench, name) is not None
    assert set(bionas_bench.__all__) <= set(dir(bionas_bench))
