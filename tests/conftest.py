"""Shared test fixtures.

Tests that read the original BioNAS reference data find it through
``bionas_pub_dir`` and skip with a reason when it is absent (it is never part of
the repository).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from bionas_bench.sweep import find_bionas_pub  # the package's own lookup: tests skip where it fails

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def bionas_pub_dir() -> Path:
    found = find_bionas_pub()
    if found is None:
        pytest.skip("original BioNAS reference data not found (set BIONAS_PUB_DIR or place ../shared)")
    return found


# ---------------------------------------------------------------------- synthetic stores
SYNTHETIC_REPLICATES = 5
SYNTHETIC_EPOCHS = 10


def synthetic_values(num_archs: int = 216, num_replicates: int = SYNTHETIC_REPLICATES) -> dict:
    """Known numbers of the synthetic store; every (arch, replicate) row is unique.

    val_loss = 0.1 + 0.001 a + 0.01 r, knowledge myc = 0.5 - 0.002 a + 0.03 r (myc_masked
    = myc + 0.1), accuracy = 1 - val_loss, train_seconds = 10 + a + r, epochs = 10 - r % 3,
    n_params = 100 + a; failed where a % 7 == 0 and r == 4. Curves: val_loss at epoch e
    (1-based) = final val_loss + 0.01 (epochs - e), NaN after ``epochs``.
    """
    import numpy as np

    a = np.arange(num_archs, dtype=np.float64)[:, None]
    r = np.arange(num_replicates, dtype=np.float64)[None, :]
    loss = 0.1 + 0.001 * a + 0.01 * r
    myc = 0.5 - 0.002 * a + 0.03 * r
    epochs = 10.0 - (r % 3) + 0 * a
    e = np.arange(1, SYNTHETIC_EPOCHS + 1, dtype=np.float64)[None, None, :]
    curve = loss[:, :, None] + 0.01 * (epochs[:, :, None] - e)
    curve = np.where(e <= epochs[:, :, None], curve, np.nan)
    failed = (a % 7 == 0) & (r == 4)
    return {
        "metrics": {
            "val_loss": loss,
            "accuracy": 1.0 - loss,
            "train_seconds": 10.0 + a + r,
            "epochs": epochs,
            "n_params": 100.0 + a + 0 * r,
        },
        "knowledge": {"myc": myc, "myc_masked": myc + 0.1},
        "curves": {"val_loss": curve.astype(np.float32)},
        "failed": np.broadcast_to(failed, loss.shape).copy(),
    }


def make_synthetic_store(path: Path, *, complete: bool = True):
    """Write the synthetic 216 x 5 ``bionas-conv1d`` store at ``path`` and return it (r+).

    With ``complete=False`` nothing is marked done (an empty store with its arrays).
    """
    import numpy as np

    from bionas_bench.store import Store, default_provenance

    values = synthetic_values()
    store = Store.create(
        path,
        space="bionas-conv1d",
        num_replicates=SYNTHETIC_REPLICATES,
        metrics=list(values["metrics"]),
        knowledge_sets=list(values["knowledge"]),
        curves=["val_loss"],
        max_epochs=SYNTHETIC_EPOCHS,
        max_filters=3,
        max_width=20,
        attrs={
            "replicate_seeds": [101, 102, 103, 104, 105],
            "provenance": default_provenance("synthetic", notes="test fixture with known numbers"),
        },
    )
    if complete:
        store.write_block(
            metrics=values["metrics"],
            knowledge=values["knowledge"],
            curves=values["curves"],
            failed=values["failed"],
            done=np.ones(values["failed"].shape, dtype=bool),
        )
        store.pack(refresh=False)
    return store


@pytest.fixture(scope="session")
def synthetic_store_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Path of a complete synthetic 216 x 5 store (read-only: do not write to it)."""
    path = tmp_path_factory.mktemp("synthetic") / "synthetic.zarr"
    make_synthetic_store(path)
    return path


@pytest.fixture(scope="session")
def synthetic_store(synthetic_store_path: Path):
    """The synthetic 216 x 5 store opened read-only (known numbers: ``synthetic_values``)."""
    from bionas_bench.store import Store

    return Store.open(synthetic_store_path)


@pytest.fixture(scope="session")
def bionas_pub_store_path(bionas_pub_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The original BioNAS table imported once per session (skips when the data is absent)."""
    from bionas_bench.importers import import_bionas_pub

    path = tmp_path_factory.mktemp("bionas_pub") / "bionas-pub.zarr"
    import_bionas_pub(bionas_pub_dir, path)
    return path


@pytest.fixture
def synthetic_store_factory():
    """``make_synthetic_store(path, complete=True)``: build a writable synthetic store."""
    return make_synthetic_store


TINY_TRAIN_DATASET = """
description = "tiny MYC set for training-farm tests: 200 sequences x 50 bp"
type = "simulated"
seed = 7

[simulation]
length = 50
n_positive = 100
n_negative = 100
task = "binary"

[[simulation.embed]]
motif = "MYC"
min = 1
max = 1

[splits]
train = 0.6
validation = 0.2
test = 0.2

[motifs.MYC]
source = "jaspar"
id = "MA0147.3"
release = "JASPAR2024"

[motif_sets]
myc = ["MYC"]
"""


@pytest.fixture(scope="session")
def tiny_train_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A dataset manifest of 200 simulated 50 bp sequences (MYC task) for training tests."""
    path = tmp_path_factory.mktemp("train_data") / "tiny-myc.toml"
    path.write_text(TINY_TRAIN_DATASET)
    return path


@pytest.fixture(scope="session")
def smoke3(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The smoke training manifest with 3 replicates (seeds 0, 1, 2)."""
    path = tmp_path_factory.mktemp("training") / "smoke3.toml"
    smoke = (REPO_ROOT / "data_manifests/training/smoke.toml").read_text()
    path.write_text(smoke.replace("count = 2", "count = 3"))
    return path


#: the architectures of :func:`smoke3_together`
SMOKE3_ARCHS = "0-3"


def smoke3_farm(dataset: Path, training: Path, out: Path, **kw):
    """``run_farm`` of :data:`SMOKE3_ARCHS` of ``bionas-conv1d`` on the CPU, one thread."""
    from bionas_bench.train.farm import run_farm

    archs = SMOKE3_ARCHS
    return run_farm("bionas-conv1d", dataset, training, out, device="cpu", archs=archs, threads=1, **kw)


@pytest.fixture(scope="session")
def smoke3_together(tiny_train_dataset: Path, smoke3: Path, tmp_path_factory: pytest.TempPathFactory):
    """The store of :data:`SMOKE3_ARCHS` with their 3 replicates trained together: what
    replicates trained in pieces (subsets, groups that fit in memory) are compared with."""
    from bionas_bench.store import Store

    out = tmp_path_factory.mktemp("farm") / "together.zarr"
    smoke3_farm(tiny_train_dataset, smoke3, out)
    return Store.open(out)


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """Collect the speed benchmarks only when benchmarking is on (``tox -e bench``).

    They time real work (a farm unit, whole sweeps) and are not correctness tests; the
    plain test run stays fast. ``pytest tests/benchmarks --benchmark-enable`` runs them.
    """
    if "benchmarks" in collection_path.parts and not config.getoption("benchmark_enable"):
        return True
    return None


@pytest.fixture(scope="session")
def bench_store_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Speed-benchmark store: the imported original table (216 x 20), or a random 216 x 20."""
    import numpy as np

    from bionas_bench.store import Store

    out = tmp_path_factory.mktemp("bench") / "bench.zarr"
    pub = find_bionas_pub()
    if pub is not None:
        from bionas_bench.importers import import_bionas_pub

        import_bionas_pub(pub, out)
        return out
    rng = np.random.default_rng(0)
    store = Store.create(
        out,
        space="bionas-conv1d",
        num_replicates=20,
        metrics=["val_loss", "accuracy"],
        knowledge_sets=["myc"],
    )
    loss = rng.uniform(0.05, 0.7, (216, 20))
    store.write_block(
        metrics={"val_loss": loss, "accuracy": 1 - loss},
        knowledge={"myc": rng.uniform(0.04, 1.0, (216, 20))},
        failed=loss > 0.69,
        done=np.ones((216, 20), dtype=bool),
    )
    store.pack(refresh=False)
    return out


@pytest.fixture(scope="module")
def one_torch_thread():
    """Run a module's tests with one torch thread, restored afterwards.

    Tiny tensors (child networks in tests, LSTM controllers, Optuna's GP) run many times
    faster on one thread than on several contending for a busy 2-core machine.
    """
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# ---------------------------------------------------------------------- Ctrl-C
@dataclass(frozen=True)
class Interrupted:
    """How a command ended after :func:`ctrl_c`: exit status, stderr, seconds to stop."""

    returncode: int
    stderr: str
    seconds: float
    pgid: int


def ctrl_c(
    cmd: list[str], ready: Callable[[], bool], wait: float = 180, sig: int = signal.SIGINT
) -> Interrupted:
    """Run ``cmd`` in a new process group and, once ``ready()``, send SIGINT to the group.

    That is what a terminal's Ctrl-C does (the command's worker processes get it too).
    ``sig=signal.SIGTERM`` sends SIGTERM to the command's process alone instead, as
    ``timeout`` or ``kill PID`` do.
    The command starts with SIGINT's default action, as from a terminal, even when the
    tests run where SIGINT is ignored (a shell's background job: ``pytest &``), which a
    child would otherwise inherit. Fails when the command fails, or is not ready within
    ``wait`` seconds; skips when it succeeds before it could be interrupted (a machine
    too fast for the test's sizes).
    """
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.time() + wait
    while proc.poll() is None and not ready():
        if time.time() > deadline:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            pytest.fail(f"{cmd} was not ready to be interrupted within {wait} s")
        time.sleep(0.05)
    if proc.poll() is not None:
        _, err = proc.communicate()
        assert proc.returncode == 0, err.decode()
        pytest.skip("the command ended before it could be interrupted")
    sent = time.time()
    if sig == signal.SIGINT:
        os.killpg(proc.pid, signal.SIGINT)
    else:
        os.kill(proc.pid, sig)
    _, err = proc.communicate(timeout=60)
    return Interrupted(proc.returncode, err.decode(), time.time() - sent, proc.pid)


def group_gone(pgid: int, wait: float) -> bool:
    """Whether every process of the group has exited within ``wait`` seconds."""
    deadline = time.time() + wait
    while time.time() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.1)
    return False
