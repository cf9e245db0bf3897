"""The Dask client helper's handling of Ctrl-C while a local cluster starts."""

from __future__ import annotations

import signal

import pytest
from distributed import LocalCluster
from distributed.core import Status

from bionas_bench import cluster
from bionas_bench.errors import SweepError


@pytest.fixture(autouse=True)
def python_sigint_handler():
    """Python's own SIGINT handler (KeyboardInterrupt) for each test, then the one before.

    These tests raise SIGINT and expect that handler. A process started with SIGINT
    ignored (a shell's background job, ``pytest &`` or ``nohup``) keeps SIG_IGN, where
    :func:`cluster._sigint_held` rightly holds nothing and a raised SIGINT does nothing.
    """
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, before)


def test_a_ctrl_c_during_startup_is_held_then_raised_after_a_clean_teardown(monkeypatch):
    """Dask cannot tear down a cluster whose constructor was interrupted (its exit handler
    prints tracebacks); the SIGINT must wait for the cluster, which is then closed."""
    made: list[LocalCluster] = []

    class InterruptedWhileStarting(LocalCluster):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            made.append(self)
            signal.raise_signal(signal.SIGINT)  # the user's Ctrl-C, before the client exists

    monkeypatch.setattr(cluster, "LocalCluster", InterruptedWhileStarting)
    client = cluster.dask_client("local", 1, error=SweepError, hint="", processes=False)
    with pytest.raises(KeyboardInterrupt), client:
        pytest.fail("the body ran after a Ctrl-C")
    assert made and made[0].status == Status.closed
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_workers_that_a_ctrl_c_stopped_as_they_started_are_an_interrupt(monkeypatch):
    """A terminal sends Ctrl-C to the worker processes too: one that comes while they import
    kills them, and the cluster fails to start. That is the Ctrl-C (exit 130), not the
    missing main guard that workers failing to start otherwise mean (exit 2)."""

    interrupt = [True]

    def failed_start(*args, **kwargs):
        if interrupt:
            signal.raise_signal(signal.SIGINT)
        raise RuntimeError("Nanny failed to start.")

    monkeypatch.setattr(cluster, "LocalCluster", failed_start)
    with pytest.raises(KeyboardInterrupt), cluster.dask_client("local", 1, error=SweepError, hint=""):
        pytest.fail("the body ran")
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    interrupt.clear()
    with pytest.raises(SweepError, match="main"), cluster.dask_client("local", 1, error=SweepError, hint=""):
        pytest.fail("the body ran")


@pytest.mark.skipif(not hasattr(signal, "pthread_sigmask"), reason="no per-thread signal masks here")
def test_worker_processes_start_with_sigint_blocked():
    """A terminal's Ctrl-C reaches worker processes that are still starting, before they
    ignore SIGINT: they start with it blocked, so it waits for them instead of killing
    them with a traceback (multiprocessing's resource tracker, which unblocks SIGINT in
    the thread that first spawns a process, must not undo it). The calling thread gets
    SIGINT again once the cluster is up."""

    def sigint_blocked() -> bool:
        return signal.SIGINT in signal.pthread_sigmask(signal.SIG_BLOCK, [])

    with cluster.dask_client("local", 2, error=SweepError, hint="") as client:
        assert list(client.run(sigint_blocked).values()) == [True, True]
        assert not sigint_blocked()


def test_only_the_first_ctrl_c_is_held():
    """A second Ctrl-C (a cluster that hangs while starting) interrupts at once."""
    with pytest.raises(KeyboardInterrupt), cluster._sigint_held() as held:
        signal.raise_signal(signal.SIGINT)
        assert held == [signal.SIGINT]
        signal.raise_signal(signal.SIGINT)
        pytest.fail("the second Ctrl-C was held")
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_ctrl_c_during_a_held_call_is_raised_once_it_returns():
    """ctrl_c_after: the call finishes (the farm's broadcast scatter, which the scheduler
    would otherwise fail during the teardown, with an unretrieved task's traceback), then
    the Ctrl-C is raised; without one the body's value stands."""
    done = []
    with pytest.raises(KeyboardInterrupt), cluster.ctrl_c_after():
        signal.raise_signal(signal.SIGINT)
        done.append("returned")
    assert done == ["returned"]
    with cluster.ctrl_c_after():
        done.append("again")
    assert done == ["returned", "again"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_an_ignored_sigint_stays_ignored():
    """Started with SIGINT ignored (a background job), nothing is held or installed."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    with cluster._sigint_held() as held:
        signal.raise_signal(signal.SIGINT)
    assert held == []
    assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN


def test_a_teardown_error_after_a_ctrl_c_does_not_replace_it(monkeypatch):
    """What goes wrong while the cluster is torn down after the body raised (here: the
    client's close meets a closed file descriptor) is not raised in place of the body's
    exception, and the other teardown steps still run: the cluster ends closed."""
    import errno

    from distributed import Client

    made: list[LocalCluster] = []
    real_close = Client.close

    class Recorded(LocalCluster):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            made.append(self)

    def close_badly(self, *args, **kwargs):  # the first close of a client closes it, then fails
        first = self.status != "closed"
        real_close(self, *args, **kwargs)
        if first:
            raise OSError(errno.EBADF, "Bad file descriptor")

    monkeypatch.setattr(cluster, "LocalCluster", Recorded)
    monkeypatch.setattr(Client, "close", close_badly)
    local = cluster.dask_client("local", 1, error=SweepError, hint="", processes=False)
    with pytest.raises(KeyboardInterrupt), local:
        raise KeyboardInterrupt
    assert made and made[0].status == Status.closed
    local = cluster.dask_client("local", 1, error=SweepError, hint="", processes=False)
    with pytest.raises(OSError, match="Bad file descriptor"), local:  # without an exception: raised
        pass
    assert made[1].status == Status.closed


@pytest.mark.parametrize("processes", [True, False], ids=["processes", "threads"])
def test_local_workers_run_without_the_statistical_profiler(processes):
    """Its 10 ms stack sampling costs CPU for a dashboard page these clusters do not serve;
    worker processes get the setting from their nannies, and the caller's config is
    left as it was."""
    import dask

    before = dask.config.get("distributed.worker.profile.enabled")
    with cluster.dask_client("local", 1, error=SweepError, hint="", processes=processes) as client:
        profiling = client.run(lambda dask_worker: "profile" in dask_worker.periodic_callbacks)
    assert list(profiling.values()) == [False]
    assert dask.config.get("distributed.worker.profile.enabled") == before


@pytest.mark.parametrize(
    "code",
    [
        "from bionas_bench import run_sweep, load_sweep_config\n"
        "run_sweep(load_sweep_config('demo'), OUT, scheduler='local')",
        "from bionas_bench.train.farm import run_farm\n"
        "run_farm('bionas-conv1d', 'myc-mini', 'smoke', OUT, archs='0', scheduler='local')",
    ],
)
def test_a_worker_reimporting_an_unguarded_script_stops_with_the_fix(tmp_path, code):
    """Code run as a spawned worker's ``__mp_main__`` that would start a local cluster
    exits with one line naming the main guard, before touching its output."""
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as stop:
        exec(compile(code, "script.py", "exec"), {"__name__": "__mp_main__", "OUT": str(out)})
    assert str(stop.value).startswith("bionas-bench: run_") and 'if __name__ == "__main__":' in str(
        stop.value
    )
    assert not out.exists() and not list(tmp_path.iterdir())


class _Client:
    """A stand-in for a Dask client: its workers and what each answers to ``run``."""

    def __init__(self, answers: dict, appear: bool = True):
        self.answers, self.appear = answers, appear

    def wait_for_workers(self, n: int, timeout: float) -> None:
        if not self.appear:
            raise TimeoutError

    def run(self, function, *args, on_error: str = "raise") -> dict:
        return self.answers


def test_workers_without_this_bionas_bench_are_refused(monkeypatch):
    """A remote worker that cannot import the package dies on its first task (a sweep then
    waits forever for workers); one of another version computes other results. Both are
    refused right after connecting, naming the worker; so is a scheduler without workers."""
    from importlib.metadata import PackageNotFoundError

    from bionas_bench import __version__

    address = "tcp://10.0.0.1:8786"

    def check(answers: dict, appear: bool = True) -> None:
        cluster.check_workers(_Client(answers, appear), address, SweepError)

    check({"tcp://w1:1": __version__})
    with pytest.raises(SweepError, match=r"tcp://w1:1: not installed.*install this version"):
        check({"tcp://w1:1": PackageNotFoundError("bionas-bench")})
    with pytest.raises(SweepError, match=r"tcp://w2:2: 0\.0\.1") as raised:
        check({"tcp://w1:1": __version__, "tcp://w2:2": "0.0.1"})
    assert "w1" not in str(raised.value)
    monkeypatch.setattr(cluster, "WORKER_WAIT_SECONDS", 0.01)
    with pytest.raises(SweepError, match=rf"{address}' has no workers.*dask worker {address}"):
        check({}, appear=False)


def test_a_lost_scheduler_is_one_error_with_the_way_on():
    """A scheduler that dies mid-run: the run's error type with the way on, not Dask's
    traceback (seen with a real scheduler killed mid-sweep: exit 2 and this one line)."""
    from distributed.comm.core import CommClosedError

    lost = "lost the connection to the Dask scheduler.*same command goes on"
    with LocalCluster(n_workers=1, processes=False, threads_per_worker=1, dashboard_address=None) as local:

        def client():
            return cluster.dask_client(local.scheduler_address, 1, error=SweepError, hint="h")

        with pytest.raises(SweepError, match=lost), client():
            raise CommClosedError("in <TCPConnector>: ConnectionRefusedError")
        with pytest.raises(ValueError, match="a task's own error"), client():  # passed through
            raise ValueError("a task's own error")


def test_a_refused_address_fails_without_the_clients_retries(monkeypatch):
    """Nothing listens at the port: the error comes from one refused connection, before
    Dask's client (which retries a refused connection for its whole 20 s timeout)."""
    import socket

    with socket.socket() as probe:  # a port that was free a moment ago, now closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    def no_client(*args, **kwargs):
        pytest.fail("Dask's client was started for a refused address")

    monkeypatch.setattr(cluster, "Client", no_client)
    refused = rf"cannot reach the Dask scheduler at 'tcp://127.0.0.1:{port}'.*refused"
    client = cluster.dask_client(f"tcp://127.0.0.1:{port}", 1, error=SweepError, hint="h")
    with pytest.raises(SweepError, match=refused), client:
        pytest.fail("connected")
