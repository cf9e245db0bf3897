"""Motif sources: ENCODE text, JASPAR/MEME files, the offline pyjaspar database."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from bionas_bench.data.datasets import find_bionas_pub_dir
from bionas_bench.data.motifs import (
    Motif,
    MotifSpec,
    jaspar_motif,
    load_motifs,
    parse_encode_motifs,
    read_motif_file,
)
from bionas_bench.errors import DataError, ManifestError

ENCODE_TEXT = """>AAA_known1\tdescription here
A 0.97 0.01 0.01 0.01
C 0.01 0.97 0.01 0.01
>BBB_disc2 other words
G 0 0 1 0
T 0 0 0 1
N 0.25 0.25 0.25 0.25
"""

JASPAR_TEXT = """>MA9990.1 TOY
A [ 10  0  0 ]
C [  0 10  0 ]
G [  0  0 10 ]
T [  0  0  0 ]
"""

MEME_TEXT = """MEME version 4

ALPHABET= ACGT

strands: + -

Background letter frequencies
A 0.25 C 0.25 G 0.25 T 0.25

MOTIF TOYMEME
letter-probability matrix: alength= 4 w= 2 nsites= 10 E= 0
0.1 0.7 0.1 0.1
0.0 0.0 0.0 1.0
"""


def test_parse_encode_text():
    motifs = parse_encode_motifs(ENCODE_TEXT, "toy.txt")
    assert list(motifs) == ["AAA_known1", "BBB_disc2"]
    assert motifs["BBB_disc2"].length == 3
    assert motifs["AAA_known1"].consensus == "AC"
    np.testing.assert_allclose(motifs["BBB_disc2"].pwm.sum(axis=1), 1.0)


def test_encode_gz_and_unknown_name_lists_close_matches(tmp_path: Path):
    path = tmp_path / "m.txt.gz"
    path.write_bytes(gzip.compress(ENCODE_TEXT.encode()))
    (motif,) = load_motifs("encode", ["AAA_known1"], path=path)
    assert motif.length == 2
    with pytest.raises(DataError, match=r"AAA_known2.*close matches: AAA_known1"):
        load_motifs("encode", ["AAA_known2"], path=path)


@pytest.mark.parametrize(
    "text, message",
    [
        ("A 0.2 0.3 0.2 0.3\n", "before the first"),
        (">X\nA 0.2 0.3 0.2\n", "expected"),
        (">X\nA 0.2 x 0.2 0.3\n", "must be numbers"),
        (">X\n>Y\nA 1 0 0 0\n", "has no rows"),
    ],
)
def test_encode_malformed(text: str, message: str):
    with pytest.raises(DataError, match=message):
        parse_encode_motifs(text, "bad.txt")


def test_missing_motif_file(tmp_path: Path):
    with pytest.raises(DataError, match="does not exist"):
        load_motifs("encode", ["X"], path=tmp_path / "nope.txt")


def test_jaspar_and_meme_files(tmp_path: Path):
    jpath = tmp_path / "toy.jaspar"
    jpath.write_text(JASPAR_TEXT)
    by_id = read_motif_file(jpath, "jaspar_file")
    assert by_id["MA9990.1"].consensus == "ACG"
    (toy,) = load_motifs("jaspar_file", ["TOY"], path=jpath)
    assert toy.consensus == "ACG"
    mpath = tmp_path / "toy.meme"
    mpath.write_text(MEME_TEXT)
    (meme,) = load_motifs("meme_file", ["TOYMEME"], path=mpath)
    assert meme.consensus == "CT"


def test_jaspar_database_offline_by_id_and_name():
    myc = jaspar_motif("MA0147.3", release="JASPAR2024")
    assert myc.length == 12 and "CACGTG" in myc.consensus
    assert myc.source == "JASPAR2024:MA0147.3"
    (by_name,) = load_motifs("jaspar", ["MAX::MYC"], release="JASPAR2024")
    assert by_name.length > 0


def test_jaspar_unknown_and_ambiguous():
    with pytest.raises(DataError, match=r"'MYCC'.*close matches:.*MYC"):
        jaspar_motif("MYCC")
    with pytest.raises(DataError, match=r"several matrices.*MA0139"):
        jaspar_motif("CTCF")
    with pytest.raises(DataError, match="unknown JASPAR release"):
        jaspar_motif("MA0147.3", release="JASPAR1999")


def test_motif_spec_from_table(tmp_path: Path):
    spec = MotifSpec.from_table({"source": "jaspar", "ids": ["MA0147.3", "MA0139.1"]}, "t")
    motifs = spec.load()
    assert [m.length for m in motifs] == [12, 19]
    rel = MotifSpec.from_table({"source": "encode", "name": "A", "path": "m.txt"}, "t", base_dir=tmp_path)
    assert rel.path == tmp_path / "m.txt"
    with pytest.raises(ManifestError, match="unknown key"):
        MotifSpec.from_table({"source": "jaspar", "id": "MA0147.3", "colour": "red"}, "t")
    with pytest.raises(ManifestError, match="unknown motif source"):
        MotifSpec.from_table({"source": "transfac", "id": "X"}, "t")
    with pytest.raises(ManifestError, match="needs a 'path'"):
        MotifSpec.from_table({"source": "encode", "name": "X"}, "t")


def test_motif_reverse_complement():
    m = Motif("m", np.array([[1, 0, 0, 0], [0, 0, 1, 0.0]]))
    assert m.consensus == "AG"
    assert m.reverse_complement().consensus == "CT"


def test_encode_reference_file():
    root = find_bionas_pub_dir()
    if root is None or not (root / "motifs" / "encode_motifs.txt.gz").is_file():
        pytest.skip("original BioNAS data not found (set BIONAS_PUB_DIR or place ../shared/bionas_pub)")
    table = read_motif_file(root / "motifs" / "encode_motifs.txt.gz", "encode")
    assert len(table) == 2067
    lengths = {k: table[k].length for k in ("MYC_known1", "CTCF_known1", "IRF_known1")}
    assert lengths == {"MYC_known1": 14, "CTCF_known1": 19, "IRF_known1": 13}
    assert "CACGTG" in table["MYC_known1"].consensus
