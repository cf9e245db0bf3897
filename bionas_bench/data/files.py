"""Reading input files that may be plain or gzip-compressed, with clear errors."""

from __future__ import annotations

import gzip
from pathlib import Path

from bionas_bench.errors import DataError


def read_bytes(path: Path, what: str) -> bytes:
    """The content of ``path``, decompressed when it is gzip (told apart by its magic bytes).

    ``what`` names the file in errors (e.g. ``"FASTA file"``), so a missing, unreadable
    or corrupt file gives one DataError that says which input and what to fix.
    """
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{what} {path} does not exist; check the path in the manifest") from None
    except OSError as exc:
        raise DataError(f"cannot read {what} {path}: {exc.strerror}") from exc
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as exc:
            raise DataError(f"{what} {path} looks gzip-compressed but is corrupt: {exc}") from exc
    return raw
