"""Dask clients for the training farm: a local cluster that stops promptly, or a remote one.

:func:`dask_client` yields a client either of a new ``LocalCluster`` (worker
processes owned by this process) or of a running scheduler at an address. For the
local cluster it arranges what a command-line user expects of Ctrl-C:

* the worker processes ignore SIGINT (a terminal sends it to the whole foreground
  process group): only this process reacts, so the workers print no tracebacks;
* when the body of the ``with`` block raises (KeyboardInterrupt included), the worker
  processes are killed at once instead of being asked to finish their task first: a
  unit cut short has not written its ``done`` cells, so it is simply retrained on
  resume;
* Dask's own log messages below ERROR are not shown (they are about the
  cluster's plumbing, e.g. a worker slower to exit than Dask's grace period, and
  would break the progress bar); errors still are.

A remote scheduler's workers belong to someone else and are left alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Iterator
from typing import Any

from distributed import Client, LocalCluster, WorkerPlugin

from bionas_bench.errors import TrainingError

__all__ = ["dask_client"]

#: Seconds a killed local worker gets before SIGKILL (it is not asked to finish its task).
KILL_GRACE_SECONDS = 0.5


class IgnoreInterrupt(WorkerPlugin):
    """Make a local worker process ignore SIGINT (its client decides when it stops)."""

    name = "bionas-bench-ignore-sigint"

    def setup(self, worker: Any) -> None:
        """Runs in the worker's event loop, the main thread of its process."""
        signal.signal(signal.SIGINT, signal.SIG_IGN)


@contextlib.contextmanager
def dask_client(scheduler: str, workers: int) -> Iterator[Client]:
    """A client of a new LocalCluster of ``workers`` processes (``"local"``), or of ``scheduler``."""
    if scheduler == "local":
        with _local_client(workers) as client:
            yield client
        return
    try:
        client = Client(scheduler, timeout="20s")
    except OSError as exc:
        raise TrainingError(
            f"cannot reach the Dask scheduler at {scheduler!r}: {exc}; start one, or use "
            f"--scheduler local (a local cluster) or none (in this process)"
        ) from None
    with client:
        yield client


@contextlib.contextmanager
def _local_client(workers: int) -> Iterator[Client]:
    """A client of a new LocalCluster; on an exception, its workers are killed, not awaited."""
    with LocalCluster(
        n_workers=workers,
        threads_per_worker=1,
        processes=True,
        dashboard_address=None,
        silence_logs=logging.ERROR,
    ) as cluster:
        client = Client(cluster)
        try:
            client.register_plugin(IgnoreInterrupt())
            yield client
        except BaseException:
            client.close()  # first: the scheduler releases the scattered data it would miss
            cluster.sync(_kill_workers, cluster)
            raise
        finally:
            client.close()


async def _kill_workers(cluster: LocalCluster) -> None:
    """Close every nanny of ``cluster`` now, killing its worker process after a short grace.

    Closing (not just killing) keeps a nanny from restarting its worker.
    """
    nannies = list(cluster.workers.values())
    await asyncio.gather(*(n.close(timeout=KILL_GRACE_SECONDS, reason="interrupted") for n in nannies))
