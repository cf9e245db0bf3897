"""Model spaces: ids, encode/decode, names, manifests, and the original table's ids."""

from __future__ import annotations

import ast
import csv

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import bionas_bench as bb
from bionas_bench.errors import ManifestError, SpaceError
from bionas_bench.space import get_space


@pytest.fixture(scope="module")
def conv1d():
    return get_space("bionas-conv1d")


@pytest.fixture(scope="module")
def eclip():
    return get_space("bionas-eclip")


def test_shipped_spaces_listed():
    assert {"bionas-conv1d", "bionas-eclip"} <= set(bb.list_spaces())


def test_conv1d_shape(conv1d):
    assert conv1d.radices == (6, 3, 4, 3)
    assert conv1d.size == 216
    assert list(conv1d.strides) == [36, 12, 3, 1]


def test_eclip_shape(eclip):
    assert eclip.num_layers == 9
    assert eclip.radices == (9, 3, 10, 3, 10, 3, 4, 3, 4)
    assert eclip.size == 1_166_400
    last = eclip.decode(eclip.size - 1)
    assert last == tuple(r - 1 for r in eclip.radices)
    assert eclip.names(0)[0] == "conv1d_f100_k20"


def test_paper_named_architectures(conv1d):
    # The reference points: best median loss and best median knowledge.
    assert conv1d.arch_name(46) == "conv1d_f3_k14 / identity / sfc / dense_u10"
    assert conv1d.arch_name(93) == "conv1d_f3_k20 / maxpool / sfc / dense_u3"
    assert conv1d.id_of("conv1d_f3_k20 / maxpool / sfc / dense_u3") == 93
    assert conv1d.id_of(["conv1d_f3_k14", "identity", "sfc", "dense_u10"]) == 46


def _original_signature(cell: str) -> tuple[str, dict]:
    op, _, params = cell.partition(":")
    return op, ast.literal_eval(params)


def _our_signature(choice) -> tuple[str, dict]:
    """Map our choice onto the original's op names and its key parameters."""
    kw = choice.kwargs
    table = {
        "conv1d": ("conv1d", {"kernel_size": kw.get("kernel_size"), "filters": kw.get("filters")}),
        "regconv2d": ("denovo", {"kernel_size": kw.get("kernel_size"), "filters": kw.get("filters")}),
        "identity": ("identity", {}),
        "maxpool1d": ("maxpool1d", {"pool_size": kw.get("pool_size"), "strides": kw.get("stride")}),
        "avgpool1d": ("avgpool1d", {"pool_size": kw.get("pool_size"), "strides": kw.get("stride")}),
        "flatten": ("flatten", {}),
        "globalmaxpool1d": ("globalmaxpool1d", {}),
        "globalavgpool1d": ("globalavgpool1d", {}),
        "sfc": ("sfc", {"output_dim": kw.get("units")}),
        "dense": ("dense", {"units": kw.get("units")}),
    }
    return table[choice.op]


def test_ids_equal_original_trial_ids(conv1d, bionas_pub_dir):
    """Every row of every replicate file: our id of its layer ops == trial_id - 1."""
    checked = 0
    for path in sorted((bionas_pub_dir / "mock_black_box").glob("tmp_*/train_history.csv")):
        with path.open(newline="") as fh:
            for row in csv.reader(fh):
                trial_id, layer_cells = int(row[0]), row[3:7]
                arch = trial_id - 1
                for layer, cell in enumerate(layer_cells):
                    op, params = _original_signature(cell)
                    ours_op, ours = _our_signature(conv1d.choice(arch, layer))
                    assert op == ours_op, (path, trial_id, layer)
                    for key, value in ours.items():
                        assert params[key] == value, (path, trial_id, layer, key)
                checked += 1
    assert checked == 216 * 20


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 1_166_399))
def test_eclip_roundtrip_property(arch_id):
    space = get_space("bionas-eclip")
    choices = space.decode(arch_id)
    assert space.encode(choices) == arch_id
    assert space.id_of(space.arch_name(arch_id)) == arch_id


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(0, 215), min_size=1, max_size=50))
def test_vectorised_decode_matches_scalar(ids):
    space = get_space("bionas-conv1d")
    arr = np.array(ids)
    digits = space.decode(arr)
    assert digits.shape == (len(ids), 4)
    for i, d in zip(ids, digits, strict=True):
        assert tuple(d) == space.decode(i)
    assert np.array_equal(space.encode(digits), arr)


def test_enumerate_is_row_id_and_lexicographic(conv1d):
    table = conv1d.enumerate()
    assert table.shape == (216, 4)
    assert np.array_equal(conv1d.encode(table), np.arange(216))
    # layer 0 outermost: rows are in lexicographic order of the digits
    assert [tuple(r) for r in table] == sorted(tuple(r) for r in table)
    assert len(set(conv1d.arch_names())) == 216


@pytest.mark.parametrize("bad", [-1, 216, 10**9, 3.5])
def test_id_out_of_range(conv1d, bad):
    with pytest.raises(SpaceError, match="bionas-conv1d"):
        conv1d.decode(bad)


def test_encode_bad_choice(conv1d):
    with pytest.raises(SpaceError, match="layer 1"):
        conv1d.encode([0, 3, 0, 0])
    with pytest.raises(SpaceError, match="last axis 4"):
        conv1d.encode([0, 0, 0])


def test_unknown_choice_and_space(conv1d):
    with pytest.raises(SpaceError, match="choices: conv1d_f3_k8"):
        conv1d.id_of("conv1d_f3_k9 / identity / sfc / dense_u10")
    with pytest.raises(SpaceError, match="available: bionas-conv1d"):
        get_space("no-such-space")


def test_malformed_manifests(tmp_path):
    with pytest.raises((ManifestError, SpaceError), match="is a folder; pass a .toml file"):
        get_space(tmp_path)
    bad_toml = tmp_path / "broken.toml"
    bad_toml.write_text("[space\nname = 1")
    with pytest.raises(SpaceError, match="not valid TOML"):
        get_space(bad_toml)
    typo = tmp_path / "typo.toml"
    typo.write_text(
        '[space]\nname = "x"\n[[layers]]\nname = "a"\n'
        '[[layers.choices]]\nname = "c"\nop = "identity"\nparamz = {}\n'
    )
    with pytest.raises(ManifestError, match="unknown key.*paramz"):
        get_space(typo)
    dup = tmp_path / "dup.toml"
    dup.write_text(
        '[space]\nname = "x"\n[[layers]]\nname = "a"\n'
        '[[layers.choices]]\nname = "c"\nop = "identity"\n'
        '[[layers.choices]]\nname = "c"\nop = "identity"\n'
    )
    with pytest.raises(ManifestError, match="unique"):
        get_space(dup)
    with pytest.raises(SpaceError, match="does not exist"):
        get_space(tmp_path / "missing.toml")


def test_space_records_manifest_hash(conv1d):
    assert len(conv1d.manifest_sha256) == 64
    assert "bionas-conv1d" in conv1d.manifest_text
