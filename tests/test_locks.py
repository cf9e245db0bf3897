"""The one-writer lock file of a results folder or a store."""

from __future__ import annotations

import os
import socket
import stat

import pytest

from bionas_bench.errors import SweepError
from bionas_bench.locks import folder_lock, holds


def test_a_lock_is_a_plain_text_file_of_pid_and_host_removed_on_exit(tmp_path):
    lock = tmp_path / ".sweep.lock"
    with folder_lock(lock, SweepError, "busy: {owner}"):
        assert lock.read_text() == f"{os.getpid()} {socket.gethostname()}\n"
        assert stat.S_IMODE(lock.stat().st_mode) & 0o111 == 0  # not executable
        with (
            pytest.raises(SweepError, match=f"busy: {os.getpid()} "),
            folder_lock(lock, SweepError, "busy: {owner}"),
        ):
            pytest.fail("a second holder was let in")
        assert lock.exists()  # the refused one removed nothing
    assert not lock.exists()


def test_a_token_names_the_run_that_holds_the_lock(tmp_path):
    """The token follows pid and host; ``holds`` is true only while that run holds the lock,
    and a stale lock with a token is still taken over (its pid is read as before)."""
    lock = tmp_path / "store.zarr.lock"
    assert not holds(lock, "run-a")
    with folder_lock(lock, SweepError, "busy: {owner}", token="run-a"):
        assert lock.read_text() == f"{os.getpid()} {socket.gethostname()} run-a\n"
        assert holds(lock, "run-a") and not holds(lock, "run-b")
        with (
            pytest.raises(SweepError, match=rf"^busy: {os.getpid()} {socket.gethostname()}$"),
            folder_lock(lock, SweepError, "busy: {owner}", token="run-b"),
        ):
            pytest.fail("a second holder was let in")
    assert not holds(lock, "run-a")
    dead = 2**22 + 12345  # above Linux's default pid_max: no such process
    lock.write_text(f"{dead} {socket.gethostname()} run-old\n")
    with folder_lock(lock, SweepError, "busy: {owner}", token="run-new"):
        assert holds(lock, "run-new") and not holds(lock, "run-old")
