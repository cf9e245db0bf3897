"""FASTA reading, validation errors, codes and one-hot encoding."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from bionas_bench.data.fasta import decode, encode, onehot, read_fasta, reverse_complement, write_fasta
from bionas_bench.errors import DataError


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_read_plain_and_gz(tmp_path: Path):
    text = ">s1 desc\nACGT\nNacg\n>s2\nTTTTAAAA\n"
    plain = read_fasta(write(tmp_path / "a.fa", text))
    gz = tmp_path / "a.fa.gz"
    gz.write_bytes(gzip.compress(text.encode()))
    packed = read_fasta(gz)
    assert plain.names == ("s1", "s2") == packed.names
    assert plain.codes.dtype == np.uint8
    np.testing.assert_array_equal(plain.codes, packed.codes)
    assert plain.codes[0].tolist() == [0, 1, 2, 3, 4, 0, 1, 2]
    assert decode(plain.codes[0]) == "ACGTNACG"


def test_invalid_character_names_file_record_and_char(tmp_path: Path):
    path = write(tmp_path / "bad.fa", ">ok\nACGT\n>broken\nACXT\n")
    with pytest.raises(
        DataError, match=r"bad\.fa record 2 \('broken'\): invalid character 'X' at position 3"
    ):
        read_fasta(path)


def test_mixed_lengths(tmp_path: Path):
    path = write(tmp_path / "mixed.fa", ">a\nACGT\n>b\nACG\n")
    with pytest.raises(DataError, match=r"mixed\.fa record 2 \('b'\) has length 3.*allow_mixed_lengths"):
        read_fasta(path)
    padded = read_fasta(path, allow_mixed_lengths=True)
    assert padded.codes[1].tolist() == [0, 1, 2, 4]
    assert padded.lengths.tolist() == [4, 3]


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "is empty"),
        ("\n\n", "is empty"),
        ("ACGT\n", "does not start"),
        (">a\n\n>b\nAC\n", "empty sequence"),
    ],
)
def test_empty_or_malformed(tmp_path: Path, text: str, message: str):
    path = write(tmp_path / "e.fa", text)
    with pytest.raises(DataError, match=rf"e\.fa.*{message}"):
        read_fasta(path)


def test_missing_file(tmp_path: Path):
    with pytest.raises(DataError, match=r"nope\.fa does not exist"):
        read_fasta(tmp_path / "nope.fa")


def test_onehot_value_and_n():
    codes = encode("ACGTN")
    x = onehot(codes, value=2.0)
    assert x.shape == (5, 4) and x.dtype == np.float32
    np.testing.assert_array_equal(x[:4], 2 * np.eye(4))
    assert not x[4].any()
    assert onehot(codes[None], dtype=np.uint8).shape == (1, 5, 4)


def test_encode_errors_and_revcomp():
    with pytest.raises(DataError, match="'-'"):
        encode("AC-T")
    assert decode(reverse_complement(encode("AACGN"))) == "NCGTT"


def test_write_roundtrip(tmp_path: Path):
    codes = np.array([[0, 1, 2, 3], [4, 3, 2, 1]], dtype=np.uint8)
    write_fasta(tmp_path / "w.fa.gz", codes)
    np.testing.assert_array_equal(read_fasta(tmp_path / "w.fa.gz").codes, codes)
