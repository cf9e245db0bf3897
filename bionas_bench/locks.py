"""One writer per folder: a lock file holding the pid and host of the process that writes.

A sweep's results folder and a training store are written by one run at a time: two
runs would write the same chunks (a store's replicates of an architecture share one)
and lose each other's values. :func:`folder_lock` refuses the second run in one line.
A lock left by a process that no longer runs on this host (a SIGKILL) is taken over; a
lock of another host is respected (that host may still be writing).
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterator
from pathlib import Path

from bionas_bench.errors import BionasError


@contextlib.contextmanager
def folder_lock(lock: Path, error: type[BionasError], busy: str, token: str = "") -> Iterator[None]:
    """Hold ``lock`` (created exclusively, removed on exit) while the body runs.

    ``busy`` is the message of the ``error`` raised when another live process holds it;
    ``{owner}`` in it is replaced by that process's "pid host". ``token`` (one word) is
    written after them, for :func:`holds`: tasks of this run on other processes can check
    that the run still holds the lock before they write.
    """
    me = f"{os.getpid()} {socket.gethostname()}" + (f" {token}" if token else "")
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)  # a text file, not executable
        except FileExistsError:
            owner = " ".join(lock.read_text(encoding="utf-8").split()[:2]) if lock.is_file() else ""
            if not _stale(owner, socket.gethostname()):
                raise error(busy.format(owner=owner or "?")) from None
            lock.unlink(missing_ok=True)
            continue
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(me + "\n")
        break
    try:
        yield
    finally:
        lock.unlink(missing_ok=True)


def holds(lock: Path, token: str) -> bool:
    """Whether ``lock`` is held by the run that took it with ``token``: false once that run
    has released it (ended) or another run has taken it over."""
    try:
        return token in lock.read_text(encoding="utf-8").split()[2:]
    except OSError:
        return False


def _stale(owner: str, host: str) -> bool:
    """Whether a lock's owner (``"pid host"``) is a process of this host that has ended."""
    pid, _, owner_host = owner.partition(" ")
    if owner_host != host or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    return False
