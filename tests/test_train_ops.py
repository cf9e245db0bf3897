"""Child-network ops: every op of bionas-conv1d builds, penalties and constraints match their definitions."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from bionas_bench.errors import TrainingError
from bionas_bench.space import get_space
from bionas_bench.train.network import BatchedNetwork, first_layer_geometry
from bionas_bench.train.ops import OPS, Conv1d, FlatShape, RegConv2d, SeparableFC, SeqShape, build_op

SPACE = get_space("bionas-conv1d")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


REGCONV = dict(SPACE.layers[0].choices[3].kwargs)  # regconv2d_f3_k8


def _gens(n: int) -> list[torch.Generator]:
    return [torch.Generator().manual_seed(i) for i in range(n)]


def test_every_architecture_builds_and_runs():
    ops_seen = set()
    x = torch.rand(2, 3, 4, 60)
    for arch in range(SPACE.size):
        net = BatchedNetwork(SPACE, arch, seq_len=60, n_labels=2, replicates=2)
        net.init_replicates(_gens(2))
        assert net(x).shape == (2, 3, 2)
        assert net.first_layer_filters().shape[-1] == 4
        ops_seen.update(SPACE.choice(arch, layer).op for layer in range(SPACE.num_layers))
    assert ops_seen == {c.op for layer in SPACE.layers for c in layer.choices}
    assert ops_seen <= set(OPS)
    assert first_layer_geometry(SPACE) == (3, 20)


def test_init_depends_only_on_the_replicate_generator():
    a = BatchedNetwork(SPACE, 150, seq_len=60, n_labels=1, replicates=3)
    a.init_replicates(_gens(3))
    b = BatchedNetwork(SPACE, 150, seq_len=60, n_labels=1, replicates=1)
    b.init_replicates([torch.Generator().manual_seed(2)])
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(pa[2], pb[0])


def test_conv1d_matches_torch_and_filters_put_bases_last():
    op = Conv1d(SeqShape(4, 30), 2, filters=3, kernel_size=8)
    op.init_replicate(0, torch.Generator().manual_seed(0))
    op.init_replicate(1, torch.Generator().manual_seed(1))
    x = torch.rand(2, 5, 4, 30)
    for r in range(2):
        ref = torch.relu(torch.nn.functional.conv1d(x[r], op.weight[r], op.bias[r]))
        torch.testing.assert_close(op(x)[r], ref)
    filters = op.first_layer_filters()
    assert filters.shape == (2, 3, 8, 4)
    assert torch.equal(filters[1, 2, 5], op.weight[1, 2, :, 5])
    limit = math.sqrt(6 / (4 * 8 + 3 * 8))
    assert op.weight.abs().max() <= limit


def test_regconv_penalty_matches_its_definition():
    op = build_op("regconv2d", REGCONV, SeqShape(4, 40), 1)
    op.init_replicate(0, torch.Generator().manual_seed(0))
    w = op.weight[0].detach().double().numpy()  # (J, 4, k)
    k = w.shape[2]
    loc = np.r_[np.arange(k // 2, 0, -1), np.arange(1, k // 2 + 1)] * (REGCONV["positional"] / (k / 2))
    s = w.sum(axis=1)
    expected = (
        REGCONV["l1"] * np.abs(w).sum()
        + np.sum(loc * np.abs(w).sum(axis=(0, 1)))
        + REGCONV["filter_penalty"] * np.sum(s / np.maximum(np.abs(s), 1e-6))
    )
    assert op.penalty().item() == pytest.approx(expected, rel=1e-6)


def test_regconv_projection_enforces_the_constraints():
    op = RegConv2d(SeqShape(4, 40), 2, filters=3, kernel_size=8, kernel_sum_max=2.0)
    with torch.no_grad():
        op.weight.copy_(torch.randn(op.weight.shape) * 2)
        op.bias.copy_(torch.randn(op.bias.shape))
    op.project_()
    w = op.weight.detach()
    assert (w >= 0).all()
    assert (w.sum(dim=3) <= 2.0 + 1e-6).all()  # along the filter length, per filter and base
    assert (op.bias <= 0).all()


def test_sfc_symmetry_penalty_and_curvature():
    op = SeparableFC(
        SeqShape(3, 9), 1, units=2, symmetric=True, smoothness_penalty=1.0, curvature_constraint=0.1
    )
    op.init_replicate(0, torch.Generator().manual_seed(0))
    full = op.positional()[0]
    assert full.shape == (2, 9) and torch.equal(full, full.flip(1))
    x = torch.rand(1, 4, 3, 9)
    expected = torch.einsum("bcl,ul,uc->bu", x[0], full, op.w_chan[0])
    torch.testing.assert_close(op(x)[0], expected)
    p = op.w_pos[0].detach()
    d2 = p[:, 2:] - 2 * p[:, 1:-1] + p[:, :-2]
    assert op.penalty().item() == pytest.approx(d2.abs().mean().item())
    mean_before = p.mean(dim=1).clone()
    op.project_()
    p = op.w_pos[0].detach()
    d2 = p[:, 2:] - 2 * p[:, 1:-1] + p[:, :-2]
    assert (d2.abs() <= 0.1 + 1e-6).all()
    torch.testing.assert_close(p.mean(dim=1), mean_before)
    smooth = torch.linspace(-1, 1, op.half).repeat(2, 1)
    with torch.no_grad():
        op.w_pos[0].copy_(smooth)
    op.project_()
    torch.testing.assert_close(op.w_pos[0], smooth)  # within bounds: unchanged


def test_bad_ops_and_parameters_are_clear_errors():
    with pytest.raises(TrainingError, match="no child-network op 'lstm'"):
        build_op("lstm", {}, SeqShape(4, 10), 1)
    with pytest.raises(TrainingError, match="op 'dense'"):
        build_op("dense", {"units": 3, "colour": "red"}, FlatShape(5), 1)
    with pytest.raises(TrainingError, match="flat input"):
        build_op("dense", {"units": 3}, SeqShape(4, 10), 1)
    with pytest.raises(TrainingError, match="longer than its input"):
        build_op("conv1d", {"filters": 3, "kernel_size": 20}, SeqShape(4, 10), 1)
    with pytest.raises(TrainingError, match="op 'conv1d': filters = -3 must be a whole number >= 1"):
        build_op("conv1d", {"filters": -3, "kernel_size": 8}, SeqShape(4, 10), 1)  # was torch's RuntimeError
    with pytest.raises(
        TrainingError, match="op 'regconv2d': kernel_sum_max = 0.0 must be a finite number > 0"
    ):
        build_op("regconv2d", {**REGCONV, "kernel_sum_max": 0.0}, SeqShape(4, 10), 1)  # was NaN weights
