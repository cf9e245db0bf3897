"""FASTA reading, compact base codes and one-hot encoding.

Sequences are stored as uint8 codes, A=0, C=1, G=2, T=3, N=4 (one byte per base, a
quarter of a float32 one-hot), and expanded to one-hot only when a model needs it.
Reading validates strictly: only A, C, G, T, N (any case) are accepted, records must
be non-empty and, unless allowed, all of one length. Every error names the file, the
record (number and name) and the offending character or length.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bionas_bench.data.files import read_bytes
from bionas_bench.errors import DataError

ALPHABET = "ACGTN"
N_CODE = 4
_INVALID = 255

_LOOKUP = np.full(256, _INVALID, dtype=np.uint8)
for _code, _base in enumerate(ALPHABET):
    _LOOKUP[ord(_base)] = _code
    _LOOKUP[ord(_base.lower())] = _code


@dataclass(frozen=True, eq=False)
class FastaRecords:
    """Records of one FASTA file: names and an (N, L) uint8 code array.

    With mixed lengths allowed, shorter records are padded on the right with N
    (code 4), which one-hot encodes as all zeros; ``lengths`` keeps the true lengths.
    """

    path: Path
    names: tuple[str, ...]
    codes: np.ndarray
    lengths: np.ndarray

    def __len__(self) -> int:
        return len(self.names)


def encode(sequence: str | bytes, where: str = "sequence") -> np.ndarray:
    """Codes (uint8, A0 C1 G2 T3 N4) of one sequence; a DataError names a bad character."""
    raw = sequence.encode("ascii", errors="replace") if isinstance(sequence, str) else sequence
    codes = _LOOKUP[np.frombuffer(raw, dtype=np.uint8)]
    bad = np.flatnonzero(codes == _INVALID)
    if bad.size:
        pos = int(bad[0])
        char = sequence[pos] if isinstance(sequence, str) else chr(raw[pos])
        raise DataError(
            f"{where}: invalid character {char!r} at position {pos + 1}; "
            "only A, C, G, T and N (any case) are allowed"
        )
    return codes


def decode(codes: np.ndarray) -> str | list[str]:
    """The letters of one code vector, or a list of strings for a 2-D array."""
    letters = np.frombuffer(ALPHABET.encode(), dtype=np.uint8)[np.asarray(codes)]
    if letters.ndim == 1:
        return letters.tobytes().decode()
    return [row.tobytes().decode() for row in letters]


def reverse_complement(codes: np.ndarray) -> np.ndarray:
    """Reverse complement of codes along the last axis (N stays N)."""
    codes = np.asarray(codes)
    comp = np.array([3, 2, 1, 0, 4], dtype=np.uint8)[codes]
    return comp[..., ::-1]


def onehot(codes: np.ndarray, value: float = 1.0, dtype: np.dtype | type = np.float32) -> np.ndarray:
    """One-hot encode codes (..., L) to (..., L, 4) in A, C, G, T order.

    The hot entry is ``value`` (the original BioNAS used 2); N is all zeros.
    """
    table = np.zeros((5, 4), dtype=dtype)
    table[np.arange(4), np.arange(4)] = value
    return table[np.asarray(codes)]


def read_fasta(path: str | Path, *, allow_mixed_lengths: bool = False) -> FastaRecords:
    """Read and validate a FASTA or gzip-compressed FASTA file."""
    path = Path(path)
    text = read_bytes(path, "FASTA file")
    names, sequences = _split_records(text, path)
    lengths = np.array([len(s) for s in sequences], dtype=np.int64)
    if not allow_mixed_lengths:
        _check_same_length(path, names, lengths)
    width = int(lengths.max())
    if np.all(lengths == width):  # fast path: one lookup over all bases
        codes = _LOOKUP[np.frombuffer(b"".join(sequences), dtype=np.uint8)].reshape(len(sequences), width)
        bad_rows = np.flatnonzero(np.any(codes == _INVALID, axis=1))
    else:
        codes = np.full((len(sequences), width), N_CODE, dtype=np.uint8)
        for i, seq in enumerate(sequences):
            codes[i, : len(seq)] = _LOOKUP[np.frombuffer(seq, dtype=np.uint8)]
        bad_rows = np.flatnonzero(np.any(codes == _INVALID, axis=1))
    if bad_rows.size:
        i = int(bad_rows[0])
        encode(sequences[i], f"FASTA file {path} record {i + 1} ({names[i]!r})")  # raises, naming the char
    return FastaRecords(path=path, names=tuple(names), codes=codes, lengths=lengths)


def write_fasta(path: str | Path, codes: np.ndarray, names: list[str] | None = None) -> None:
    """Write codes as plain FASTA (``.gz`` suffix: gzip), 1 line per sequence."""
    path = Path(path)
    names = names or [f"seq{i}" for i in range(len(codes))]
    body = "".join(f">{n}\n{s}\n" for n, s in zip(names, decode(np.atleast_2d(codes)), strict=True))
    data = body.encode()
    path.write_bytes(gzip.compress(data, mtime=0) if path.suffix == ".gz" else data)


def _split_records(raw: bytes, path: Path) -> tuple[list[str], list[bytes]]:
    """Names and sequence bytes (line breaks and spaces removed) of every record."""
    if not raw.strip():
        raise DataError(f"FASTA file {path} is empty; it needs at least one '>name' record")
    if not raw.lstrip().startswith(b">"):
        raise DataError(f"FASTA file {path} does not start with a '>name' header line; is it FASTA?")
    names: list[str] = []
    sequences: list[bytes] = []
    for number, chunk in enumerate(raw.lstrip()[1:].split(b"\n>"), start=1):
        header, _, body = chunk.partition(b"\n")
        name = header.decode("utf-8", errors="replace").strip().split(maxsplit=1)
        name_str = name[0] if name else f"#{number}"
        seq = b"".join(body.split())
        if not seq:
            raise DataError(f"FASTA file {path} record {number} ({name_str!r}) has an empty sequence")
        names.append(name_str)
        sequences.append(seq)
    return names, sequences


def _check_same_length(path: Path, names: list[str], lengths: np.ndarray) -> None:
    bad = np.flatnonzero(lengths != lengths[0])
    if bad.size:
        i = int(bad[0])
        raise DataError(
            f"FASTA file {path} record {i + 1} ({names[i]!r}) has length {lengths[i]} but record 1 "
            f"({names[0]!r}) has {lengths[0]}; sequences must share one length, or set "
            "allow_mixed_lengths = true in the dataset manifest to pad with N"
        )
