"""The one-writer lock file of a results folder or a store."""

from __future__ import annotations

import os
import socket
import stat

import pytest

from bionas_bench.errors import SweepError
from bionas_bench.locks import folder_lock


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
