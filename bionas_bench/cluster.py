"""Dask clients that stop promptly: a new local cluster, or a running scheduler.

The training farm (:mod:`bionas_bench.train.farm`) and sweeps (:mod:`bionas_bench.sweep`)
both hand independent, resumable units of work to Dask from a command line. The unit
writes its own results and marks them done last, so a unit cut short is simply redone
on resume; what the command line needs from Dask is that Ctrl-C stops everything at
once, quietly. :func:`dask_client` yields a client either of a new ``LocalCluster``
(workers owned by this process) or of a running scheduler at an address. For a local
cluster of worker *processes* it arranges what a command-line user expects of Ctrl-C:

* the worker processes ignore SIGINT (a terminal sends it to the whole foreground
  process group), and start with it blocked until then (:func:`_sigint_blocked`): only
  this process reacts, so the workers print no tracebacks, even while they start; and
  they log only critical messages: a task's error reaches this process, which raises
  it, while what a worker logs as it is killed (its heartbeat to a scheduler that has
  closed) is teardown noise;
* a Ctrl-C while the cluster starts is held until it is up (a second one is not), then
  raised as below: Dask cannot tear down a cluster whose start was cut short; callers
  hold one the same way around a call that leaves the scheduler a request it would
  fail during the teardown (see :func:`ctrl_c_after`);
* when the body of the ``with`` block raises (KeyboardInterrupt included), the client
  is closed first, which releases its futures (tasks not yet started never start),
  then the worker processes are killed at once instead of being asked to finish their
  task first; that exception is the one raised, whatever the teardown meets;
* the workers' statistical profiler is off: every 10 ms it samples the stacks of every
  thread of a worker, for a dashboard page that these clusters do not serve (measured
  on 2 cores, 2026-12-02: ``bionas-bench sweep paper-fig2-quick`` took 50.8 and 51.9 s
  against 55.4 and 54.4 s with it, runs alternated);
* Dask's own log messages below ERROR are not shown (they are about the
  cluster's plumbing, e.g. a worker slower to exit than Dask's grace period, and
  would break a progress bar); errors still are, except while the cluster is torn
  down after such an exception (a result being fetched as its task is released is
  an "error" of the teardown itself, not news).

A local cluster of worker *threads* (``processes=False``, cheaper to start, no data
copied between processes) runs in this process: its threads cannot be killed, so when
the body raises, closing the cluster waits for the tasks running at that moment to
finish (queued ones never start). A remote scheduler's workers belong to someone else
and are left alone: closing the client on an exception releases its tasks, so only
those already running there finish.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
import threading
from collections.abc import Iterator
from typing import Any

import dask
from distributed import Client, LocalCluster, WorkerPlugin
from distributed.client import CancelledError
from distributed.comm.core import CommClosedError
from distributed.utils import silence_logging_cmgr

from bionas_bench.errors import BionasError

__all__ = ["ctrl_c_after", "dask_client"]

#: Seconds a killed local worker gets before SIGKILL (it is not asked to finish its task).
KILL_GRACE_SECONDS = 0.5


class QuietWorker(WorkerPlugin):
    """Make a local worker process ignore SIGINT (its client decides when it stops) and
    log only critical messages (its client reports the errors of its tasks)."""

    name = "bionas-bench-quiet-worker"

    def setup(self, worker: Any) -> None:
        """Runs in the worker's event loop, the main thread of its process."""
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        logging.getLogger("distributed").setLevel(logging.CRITICAL)


@contextlib.contextmanager
def dask_client(
    scheduler: str,
    workers: int,
    *,
    error: type[BionasError],
    hint: str,
    processes: bool = True,
) -> Iterator[Client]:
    """A client of a new LocalCluster (``scheduler="local"``), or of the scheduler at that address.

    Args:
        scheduler: ``"local"``, or the address of a running Dask scheduler
            (``tcp://host:8786``).
        workers: workers of the local cluster, one thread each (the caller's rule:
            the farm's ``--workers``, one per core for a sweep).
        error: raised when the address cannot be reached, so that each caller's users
            get its own error type (:class:`~bionas_bench.errors.TrainingError`,
            :class:`~bionas_bench.errors.SweepError`).
        hint: the caller's alternatives, ending that error's message (e.g. "use
            --scheduler local or sync").
        processes: local workers are processes (killed at once when the body raises)
            or, when False, threads of this process (the body's exception waits for the
            tasks they are running).
    """
    if scheduler == "local":
        with _local_client(workers, processes, error) as client:
            yield client
        return
    try:
        _refuse_refused(scheduler)
        client = Client(scheduler, timeout="20s")
    except OSError as exc:  # TimeoutError included
        message = f"cannot reach the Dask scheduler at {scheduler!r}: {exc}; start one, or {hint}"
        raise error(message) from None
    except (ValueError, TypeError) as exc:  # not an address at all ("missing port number")
        raise error(_not_an_address(scheduler, exc, hint)) from None
    with _quiet_reconnects(), client:
        check_workers(client, scheduler, error)
        try:
            yield client
        except (CancelledError, CommClosedError) as exc:
            if isinstance(exc, CancelledError) and "scheduler-connection-lost" not in str(exc):
                raise
            raise error(
                f"lost the connection to the Dask scheduler at {scheduler!r} mid-run: what finished is "
                "kept, and the same command goes on from there once the scheduler runs again"
            ) from None


def _refuse_refused(scheduler: str) -> None:
    """Raise ``ConnectionRefusedError`` at once when nothing listens at a ``tcp://``
    scheduler address: Dask's client retries a refused connection for its whole timeout
    (20 s). Anything else (a slow network, a name to resolve) is left to the client."""
    import socket

    from distributed.comm import parse_address
    from distributed.comm.addressing import parse_host_port

    scheme, location = parse_address(scheduler)
    if scheme != "tcp":
        return
    host, port = parse_host_port(location)
    try:
        socket.create_connection((host, port), timeout=2.0).close()
    except ConnectionRefusedError:
        raise
    except OSError:
        return


#: how long a remote scheduler may take to have a worker before the run is refused
WORKER_WAIT_SECONDS = 30.0


def check_workers(client: Client, scheduler: str, error: type[BionasError]) -> None:
    """Refuse a remote scheduler without workers, or whose workers lack this bionas-bench.

    A worker that cannot import the package dies on its first task, and the run would
    then wait forever for workers (a sweep) or end in a traceback (the farm); a worker of
    another version computes other results. Asked once, right after connecting.
    """
    from importlib.metadata import version

    from bionas_bench import __version__

    try:
        client.wait_for_workers(1, timeout=WORKER_WAIT_SECONDS)
    except TimeoutError:
        raise error(
            f"the Dask scheduler at {scheduler!r} has no workers (waited {WORKER_WAIT_SECONDS:g} s): "
            f"start some with 'dask worker {scheduler}', where bionas-bench {__version__} is installed"
        ) from None
    found = client.run(version, "bionas-bench", on_error="return")
    wrong = {w: v for w, v in found.items() if v != __version__}
    if wrong:
        seen = "; ".join(
            f"{w}: {v if isinstance(v, str) else 'not installed'}" for w, v in sorted(wrong.items())
        )
        raise error(
            f"Dask worker(s) of {scheduler!r} lack bionas-bench {__version__}, the version here ({seen}): "
            "install this version in the workers' environment (pip install -e . from the same checkout)"
        )


@contextlib.contextmanager
def _quiet_reconnects() -> Iterator[None]:
    """Keep the client's reconnection attempts out of the output while it runs (a lost
    scheduler logs a traceback per attempt); the caller reports the loss in one line."""
    logger = logging.getLogger("distributed.client")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


#: why a worker process may fail to start, and the fix (its own error is printed above)
MAIN_GUARD = (
    "a script that starts a local cluster (run_sweep or run_farm with scheduler='local') must "
    "do so under 'if __name__ == \"__main__\":', because every worker process imports the "
    "script again"
)


def refuse_reimported_script(call: str) -> None:
    """Stop a worker process that is importing the user's script again and meets a call
    that would start a local cluster (the script calls ``call`` outside a main guard).

    multiprocessing's spawn and forkserver start methods run the parent's main script in
    each new process as the module ``__mp_main__``; an unguarded ``run_sweep`` there would
    start a cluster of its own, recursively. An exception could only become a traceback
    per worker (and Dask's "Nanny failed to start" in the parent), so the worker exits
    with one line naming the fix; the parent then raises :data:`MAIN_GUARD`'s advice too.
    """
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_code.co_name == "<module>" and frame.f_globals.get("__name__") == "__mp_main__":
            raise SystemExit(f"bionas-bench: {call}(scheduler='local') ran in a worker process: {MAIN_GUARD}")
        frame = frame.f_back


def check_address(scheduler: str, error: type[BionasError], hint: str) -> None:
    """Refuse a ``scheduler`` that is not a Dask scheduler address, without connecting:
    callers check it before any work or output (a dry run, the demo's header)."""
    from distributed.comm import parse_address
    from distributed.comm.addressing import parse_host_port

    try:
        scheme, location = parse_address(scheduler)
        if scheme in ("tcp", "tls"):  # the schemes of a remote scheduler, which needs a port
            parse_host_port(location)
    except (ValueError, TypeError) as exc:
        raise error(_not_an_address(scheduler, exc, hint)) from None


def _not_an_address(scheduler: str, exc: Exception, hint: str) -> str:
    return (
        f"--scheduler {scheduler!r} is neither a known value nor a Dask scheduler address "
        f"like tcp://host:8786 ({exc}); {hint}"
    )


@contextlib.contextmanager
def _local_client(workers: int, processes: bool, error: type[BionasError]) -> Iterator[Client]:
    """A client of a new LocalCluster; on an exception, worker processes are killed, not awaited.

    The scheduler runs in this process, so its teardown logs are silenced here. Worker
    processes that fail to start (whose errors they print themselves) raise ``error``
    with the likeliest cause, a script without a main guard; after a Ctrl-C, which a
    terminal sends to them as well, the cause is that Ctrl-C, and it is raised instead.
    """
    # the worker processes' nannies hand them this config, thread workers read it as they start
    with _sigint_held() as held, dask.config.set({"distributed.worker.profile.enabled": False}):
        try:
            with _sigint_blocked():
                cluster = LocalCluster(
                    n_workers=workers,
                    threads_per_worker=1,
                    processes=processes,
                    # The scheduler always serves HTTP (health checks, metrics); None would mean
                    # port 8787 and a warning when another cluster has it: any free port, this
                    # host only, and no dashboard on it.
                    dashboard_address="127.0.0.1:0",
                    scheduler_kwargs={"dashboard": False},
                    silence_logs=logging.ERROR,
                )
        except RuntimeError as exc:
            if "failed to start" not in str(exc):
                raise
            if held:  # a terminal's Ctrl-C reaches the worker processes too, mid-import
                raise KeyboardInterrupt from None
            raise error(
                f"the local Dask cluster's worker processes failed to start ({exc}): {MAIN_GUARD}"
            ) from None
        try:
            client = Client(cluster)
            if processes:  # a worker thread may not set signal handlers (nor need to)
                client.register_plugin(QuietWorker())
        except BaseException:
            cluster.close()
            raise
    try:
        if held:
            raise KeyboardInterrupt
        yield client
    except BaseException:
        _tear_down(client, cluster, processes)
        raise
    try:
        client.close()
    finally:
        cluster.close()


@contextlib.contextmanager
def _sigint_blocked() -> Iterator[None]:
    """Block SIGINT in this thread while a local cluster starts, so that its worker
    processes start with SIGINT blocked.

    A terminal's Ctrl-C goes to the whole process group, the starting worker processes
    included, and a worker that gets it before it ignores SIGINT (:class:`QuietWorker`,
    registered once the cluster is up) dies printing a traceback. A thread starts with
    the signal mask of the thread that starts it, and a process with that of the thread
    that forks it, across exec: Dask's event-loop thread, started here, and the worker
    processes it spawns begin with SIGINT blocked, so a Ctrl-C stays pending for them
    and is dropped once they ignore it. In this thread it stays pending until the block
    ends, then reaches the handler of :func:`_sigint_held` (held, then raised), as one
    Ctrl-C however many came.

    ``multiprocessing`` starts its resource tracker on the first spawn, and unblocks
    SIGINT in the spawning thread afterwards (it blocks it around that start); started
    here first, the tracker leaves the block alone. Only where ``pthread_sigmask``
    exists (not on Windows)."""
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    from multiprocessing import resource_tracker

    resource_tracker.ensure_running()
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _tear_down(client: Client, cluster: LocalCluster, processes: bool) -> None:
    """Close ``client``, kill the worker processes (``processes``), close ``cluster``: after
    the body raised, so each step is tried whatever the one before it raised, and a
    step's error is not raised (nor logged): the body's exception is the news, and what
    goes wrong while a cluster is torn down in a hurry (a comm or pipe already closed) is
    not."""
    steps = [client.close]  # first: the scheduler releases the tasks and scattered data
    if processes:
        steps.append(lambda: cluster.sync(_kill_workers, cluster))
    steps.append(cluster.close)  # threads: waits for their running tasks
    with silence_logging_cmgr(logging.CRITICAL):
        for step in steps:
            with contextlib.suppress(Exception):
                step()


@contextlib.contextmanager
def ctrl_c_after() -> Iterator[None]:
    """Hold a Ctrl-C until the body ends, then raise it (a second one is not held).

    For a short call into Dask that the scheduler serves with requests of its own, such as
    ``client.scatter(..., broadcast=True)`` (the scheduler copies the data to every worker):
    a Ctrl-C only stops this process waiting, the scheduler's handler goes on, and the
    teardown that follows closes what it is using; it then fails, and asyncio prints its
    "Task exception was never retrieved" traceback above the command's one line. Waiting
    for the call to return leaves nothing running to fail. Held as while a cluster starts
    (see :func:`_sigint_held`); where nothing can be held, the body is simply run.
    """
    with _sigint_held() as held:
        yield
    if held:
        raise KeyboardInterrupt


@contextlib.contextmanager
def _sigint_held() -> Iterator[list[int]]:
    """Hold a Ctrl-C that comes while a local cluster starts; the list says if one came.

    Dask cannot clean up a LocalCluster whose start was interrupted (its exit handler
    then prints tracebacks about workers in the wrong state), so the first SIGINT is
    only noted, and the caller raises it once the cluster is up and can be torn down
    cleanly (a second of waiting). A second SIGINT is not held. Only possible in the
    main thread with Python's own handler installed; elsewhere nothing is held.
    """
    held: list[int] = []
    if threading.current_thread() is not threading.main_thread() or (
        signal.getsignal(signal.SIGINT) is not signal.default_int_handler
    ):
        yield held
        return

    def hold(signum: int, frame: Any) -> None:
        if held:
            raise KeyboardInterrupt
        held.append(signum)

    previous = signal.signal(signal.SIGINT, hold)
    try:
        yield held
    finally:
        signal.signal(signal.SIGINT, previous)


async def _kill_workers(cluster: LocalCluster) -> None:
    """Close every nanny of ``cluster`` now, killing its worker process after a short grace.

    Closing (not just killing) keeps a nanny from restarting its worker.
    """
    nannies = list(cluster.workers.values())
    await asyncio.gather(*(n.close(timeout=KILL_GRACE_SECONDS, reason="interrupted") for n in nannies))
