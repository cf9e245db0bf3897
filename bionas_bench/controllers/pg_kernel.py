"""Compiled training update and sampling of the BioNAS LSTM controller (numba), runs
spread over threads.

Why compiled: with the original hyper-parameters a PPO update takes up to 100 epochs x
9 minibatches = 900 optimiser steps on minibatches of 5 architectures, and a converged
run (whose KL never reaches the 0.01 stop) takes all 900 at every episode. One step is
~0.7 M multiply-adds (forward, backward, the KL forward), so an interpreter loop -- even
batched over runs, where the slowest run sets the number of sequential steps -- spends
most of its time on per-operation overhead. Here a whole update of one run (every epoch,
minibatch, Adam step and KL check) is one compiled call that releases the GIL, and the
runs of a batch are handed out to a pool of threads one at a time. Every run is computed
by the same code on its own data, so a run gives bit-identical results alone or inside
any batch, on any number of threads.

The mathematics is that of :class:`~bionas_bench.controllers.lstm_policy.Net` plus the
losses of :mod:`~bionas_bench.controllers.policy_gradient` (whose torch-autograd
reference this module is tested against): an LSTM cell with gate order (i, f, g, o)
(sigmoid or, with ``hard``, hard-sigmoid input, forget and output gates), a softmax head
per layer, the next input a dense map of the previous layer's probabilities (``"probs"``
feed) or a row of the embedding of the sampled choice (``"action"`` feed); Adam with
Keras-style inverse-time decay.

Precision: float32, as the original Keras controller computed, in every array and every
vector loop (the ``F(...)`` constants keep numba from promoting a loop to float64). On
this AVX-512 machine a float32 step is ~1.6x faster than the float64 one it replaces
(16 lanes a vector instead of 8), and after 1,800 steps of a converged run the float32
parameters are within 1e-5 of float64 ones (parameters that moved by 0.07).

Work saved without changing the mathematics: a layer's logits are dot products with the
head weights transposed once per step (a contiguous dot instead of a scalar loop per
choice), the softmax exponentials of all samples are one vector call, samples with equal
inputs share their forward and backward pass, and the KL check's forward pass runs in one
call with the next minibatch's (see :func:`update_run`). On updates replayed from the
paper's protocol these took a step from 71 us to 60 us on this machine (from 65 us to
33 us with the "action" feed, whose settled runs repeat one architecture); sums are taken
in another order, so parameters differ from the former code's by float32 rounding.

Sampling (:func:`sample_run`) is the float64 computation of the torch rollout, compiled:
a run's draws then cost ~20 us an architecture instead of the batched torch rollout's
per-call overhead, and the runs of a batch spread over the same threads.

Parameter layout: a run's parameters are one flat row in the order of
:meth:`~bionas_bench.controllers.lstm_policy.NetShape.names`; ``po`` holds each
parameter's offset (``WU, b, start, head_W[l], head_b[l], emb_W[l], emb_b[l]``).
Choices of all layers are concatenated along one axis of length ``C = sum radices``;
``coff[l]`` is where layer ``l`` starts.
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, wait
from typing import Any

import numpy as np
from numba import njit

PPO, REINFORCE, DIVERSE = 0, 1, 2
ALGORITHMS = {"ppo": PPO, "reinforce": REINFORCE, "diverse": DIVERSE}
BETA1, BETA2, EPS = 0.9, 0.999, 1e-7


# ---------------------------------------------------------------- vectorisable primitives
# ``contract`` lets LLVM fuse a * b + c into FMA instructions; no other fast-math flag
# (but ``reassoc`` for the dot product), so every sum is in the order written here.
# ``error_model="numpy"``: no ZeroDivisionError branch, which would stop vectorisation.
FLAGS = {"contract"}
REDUCE_FLAGS = {"contract", "reassoc"}
F = np.float32  #: the kernel's precision (numba types these globals as float32 constants)
ZERO, ONE, TWO = F(0.0), F(1.0), F(2.0)
HALF, HARD_SLOPE = F(0.5), F(0.2)  # the hard sigmoid's offset and slope
_LN2_HI = F(0.693145751953125)  # ln 2 split in two (16 significant bits, so k * _LN2_HI is exact)
_LN2_LO = F(1.428606765330187e-06)
_INV_LN2 = F(1.4426950408889634)
_SHIFT = F(12582912.0)  # 1.5 * 2**23: adding it rounds to an integer in the low bits
_SHIFT_BITS = int(np.float32(12582912.0).view(np.int32))
_EXP_LO, _EXP_HI = F(-87.0), F(87.0)  # exp stays a normal float32 inside
_TAYLOR = tuple(F(1.0 / math.factorial(k)) for k in range(8))  # 1/k!, k = 0..7


@njit(cache=True, fastmath=FLAGS, error_model="numpy")
def _vexp(src, dst, n, scale, fbuf):
    """``dst[:n] = exp(scale * src[:n])`` to ~1 ulp of float32, in loops LLVM vectorises.

    libm's scalar exp/tanh took ~60 % of a training step. Range reduction
    ``x = k ln2 + r`` (``|r| <= ln2 / 2``), degree-7 Taylor polynomial of ``exp(r)``
    (truncation < 1e-8 relative), times ``2**k`` built in the exponent bits (``fbuf``:
    float32 scratch of length >= n). Inputs are clamped to [-87, 87] (no overflow or
    subnormal; the sigmoid and tanh built on it are saturated there to float32 anyway).
    """
    ibuf = fbuf.view(np.int32)
    c0, c1, c2, c3, c4, c5, c6, c7 = _TAYLOR
    factor = F(scale)
    for i in range(n):
        v = factor * src[i]
        v = v if v > _EXP_LO else _EXP_LO
        v = v if v < _EXP_HI else _EXP_HI
        t = v * _INV_LN2 + _SHIFT
        fbuf[i] = t
        k = t - _SHIFT
        r = (v - k * _LN2_HI) - k * _LN2_LO
        q = c7
        q = q * r + c6
        q = q * r + c5
        q = q * r + c4
        q = q * r + c3
        q = q * r + c2
        q = q * r + c1
        dst[i] = q * r + c0
    for i in range(n):
        ibuf[i] = (ibuf[i] - _SHIFT_BITS + 127) << 23
    for i in range(n):
        dst[i] *= fbuf[i]


@njit(cache=True, fastmath=FLAGS, error_model="numpy")
def _sigmoid(src, dst, n, ebuf, fbuf):
    """``dst[:n] = 1 / (1 + exp(-src[:n]))``."""
    _vexp(src, ebuf, n, -1.0, fbuf)
    for i in range(n):
        dst[i] = ONE / (ONE + ebuf[i])


@njit(cache=True, fastmath=FLAGS, error_model="numpy")
def _tanh(src, dst, n, ebuf, fbuf):
    """``dst[:n] = tanh(src[:n]) = 1 - 2 / (1 + exp(2 src))`` (absolute error ~1e-7)."""
    _vexp(src, ebuf, n, 2.0, fbuf)
    for i in range(n):
        dst[i] = ONE - TWO / (ONE + ebuf[i])


@njit(cache=True, fastmath=FLAGS, error_model="numpy")
def _hard_sigmoid(x):
    """Keras's ``hard_sigmoid``: ``clip(0.2 x + 0.5, 0, 1)``."""
    return min(max(HARD_SLOPE * x + HALF, ZERO), ONE)


@njit(cache=True, fastmath=FLAGS, error_model="numpy")
def _hard_slope(y):
    """The derivative of the hard sigmoid at output ``y``: 0.2 inside its linear part
    (``0 < y < 1``), 0 where it is clipped."""
    return HARD_SLOPE if ZERO < y < ONE else ZERO


@njit(cache=True, fastmath=FLAGS, error_model="numpy")
def _axpy_rows(out, a, rows, k_lo, k_hi):
    """``out += sum_{k_lo <= k < k_hi} a[k] * rows[k]`` (rows of a 2-D array), four rows a
    pass so that ``out`` is loaded and stored a quarter as often."""
    n = out.shape[0]
    k = k_lo
    while k + 4 <= k_hi:
        a0, a1, a2, a3 = a[k], a[k + 1], a[k + 2], a[k + 3]
        r0, r1, r2, r3 = rows[k], rows[k + 1], rows[k + 2], rows[k + 3]
        for j in range(n):
            out[j] += a0 * r0[j] + a1 * r1[j] + a2 * r2[j] + a3 * r3[j]
        k += 4
    while k < k_hi:
        a0, r0 = a[k], rows[k]
        for j in range(n):
            out[j] += a0 * r0[j]
        k += 1


@njit(cache=True, fastmath=FLAGS, error_model="numpy")
def _matmul_rows(out, x, w, nb, inputs):
    """``out[i] += x[i, :inputs] @ w[:inputs]`` for ``i < nb``. Four rows of ``w`` a pass
    (loaded once, from L1, for all ``nb`` samples; ``w`` is larger than L1)."""
    n = out.shape[1]
    k = 0
    while k + 4 <= inputs:
        r0, r1, r2, r3 = w[k], w[k + 1], w[k + 2], w[k + 3]
        for i in range(nb):
            a0, a1, a2, a3 = x[i, k], x[i, k + 1], x[i, k + 2], x[i, k + 3]
            o = out[i]
            for j in range(n):
                o[j] += a0 * r0[j] + a1 * r1[j] + a2 * r2[j] + a3 * r3[j]
        k += 4
    while k < inputs:
        r0 = w[k]
        for i in range(nb):
            a0, o = x[i, k], out[i]
            for j in range(n):
                o[j] += a0 * r0[j]
        k += 1


@njit(cache=True, fastmath=REDUCE_FLAGS, error_model="numpy")
def _dot(a, b):
    """``sum_j a[j] * b[j]``, vectorised (``reassoc``: LLVM picks the partial sums; the
    order is fixed by the compiled code, so a run stays deterministic on a machine)."""
    total = ZERO
    for j in range(a.shape[0]):
        total += a[j] * b[j]
    return total


@njit(cache=True, fastmath=REDUCE_FLAGS, error_model="numpy")
def _dots_col(out, col, rows, nb, w):
    """``out[i, col] = rows[i] . w`` for ``i < nb``; five rows a pass share each load of ``w``."""
    n = w.shape[0]
    i = 0
    while i + 5 <= nb:
        r0, r1, r2, r3, r4 = rows[i], rows[i + 1], rows[i + 2], rows[i + 3], rows[i + 4]
        a0 = a1 = a2 = a3 = a4 = ZERO
        for j in range(n):
            wj = w[j]
            a0 += r0[j] * wj
            a1 += r1[j] * wj
            a2 += r2[j] * wj
            a3 += r3[j] * wj
            a4 += r4[j] * wj
        out[i, col], out[i + 1, col], out[i + 2, col], out[i + 3, col], out[i + 4, col] = a0, a1, a2, a3, a4
        i += 5
    while i < nb:
        out[i, col] = _dot(rows[i], w)
        i += 1


@njit(cache=True, fastmath=FLAGS, error_model="numpy")
def _transpose_heads(flat, po, radices, coff, units, ht, back):
    """``ht[coff[l] + k] = head_W[l][:, k]`` of the flat row ``flat`` (``back``: the other
    way, into ``flat``): the head weights with a choice a row, so that a logit is one
    contiguous dot product and a row of ``dh`` one contiguous axpy."""
    num_layers = radices.shape[0]
    for layer in range(num_layers):
        lo, k_l, o = po[3 + layer], radices[layer], coff[layer]
        for u in range(units):
            for kk in range(k_l):
                if back:
                    flat[lo + u * k_l + kk] = ht[o + kk, u]
                else:
                    ht[o + kk, u] = flat[lo + u * k_l + kk]


@njit(cache=True, fastmath=FLAGS, error_model="numpy")
def _head(h, ht, hb, o, k_l, nb, lp, p, sh, ex, fbuf):
    """Log-probabilities and probabilities ``lp, p[:nb, o:o + k_l]`` of one layer's softmax
    head on the hidden states ``h[:nb]``; ``sh, ex, fbuf``: scratch of length >= nb * k_l."""
    for kk in range(k_l):
        _dots_col(lp, o + kk, h, nb, ht[o + kk])
    for i in range(nb):
        top = -np.inf
        for kk in range(k_l):
            top = max(top, lp[i, o + kk] + hb[kk])
        for kk in range(k_l):
            sh[i * k_l + kk] = (lp[i, o + kk] + hb[kk]) - top
    _vexp(sh, ex, nb * k_l, 1.0, fbuf)
    for i in range(nb):
        total = ZERO
        for kk in range(k_l):
            total += ex[i * k_l + kk]
        lse = F(math.log(total))
        for kk in range(k_l):
            lp[i, o + kk] = sh[i * k_l + kk] - lse
            p[i, o + kk] = ex[i * k_l + kk] / total


@njit(cache=True, inline="always", fastmath=FLAGS, error_model="numpy")
def _param(wrow, po, index, rows, cols):
    """View ``(rows, cols)`` of parameter ``index`` inside the flat row ``wrow``."""
    lo = po[index]
    return wrow[lo : lo + rows * cols].reshape((rows, cols))


@njit(cache=True, fastmath=FLAGS, error_model="numpy")
def _forward(
    wrow,
    po,
    radices,
    coff,
    units,
    emb,
    feed_probs,
    hard,
    st,
    act,
    nb,
    xh,
    s,
    tg,
    c,
    tc,
    hs,
    lp,
    p,
    z,
    ht,
    sh,
    ebuf,
    fbuf,
):
    """Forward pass of ``nb`` samples; fills the caches and ``lp`` / ``p`` ``(nb, C)``.
    ``hard``: hard-sigmoid input, forget and output gates (else sigmoid)."""
    num_layers = radices.shape[0]
    gates = 4 * units
    width = emb + units
    wu = _param(wrow, po, 0, width, gates)
    bias = wrow[po[1] : po[1] + gates]
    state_dim = st.shape[1]
    cells = z.shape[0] * units  # the size of one layer's (bs, units) caches
    for i in range(nb):
        for k in range(width):
            xh[0, i, k] = 0.0
        if feed_probs:
            start = _param(wrow, po, 2, state_dim, emb)
            for k in range(state_dim):
                a = st[i, k]
                for e in range(emb):
                    xh[0, i, e] += a * start[k, e]
        else:
            start = _param(wrow, po, 2, 1, emb)
            for e in range(emb):
                xh[0, i, e] = start[0, e]
    for layer in range(num_layers):
        k_l = radices[layer]
        o = coff[layer]
        head_b = wrow[po[3 + num_layers + layer] : po[3 + num_layers + layer] + k_l]
        inputs = emb if layer == 0 else width  # layer 0 starts from h = c = 0
        for i in range(nb):
            for j in range(gates):
                z[i, j] = bias[j]
        _matmul_rows(z, xh[layer], wu, nb, inputs)
        # the candidate as tanh(x) = 2 sigmoid(2x) - 1: with sigmoid gates, every gate of
        # every sample in one pass; with hard-sigmoid gates, the candidates alone
        for i in range(nb):
            for u in range(2 * units, 3 * units):
                z[i, u] *= TWO
        if hard:
            for i in range(nb):
                _sigmoid(z[i, 2 * units : 3 * units], s[layer, i, 2 * units : 3 * units], units, ebuf, fbuf)
                for u in range(2 * units):
                    s[layer, i, u] = _hard_sigmoid(z[i, u])
                for u in range(3 * units, gates):
                    s[layer, i, u] = _hard_sigmoid(z[i, u])
        else:
            _sigmoid(z.reshape(z.size), s[layer].reshape(z.size), nb * gates, ebuf, fbuf)
        for i in range(nb):
            si_row, tg_row, c_row = s[layer, i], tg[layer, i], c[layer, i]
            for u in range(units):
                tgu = TWO * si_row[2 * units + u] - ONE
                tg_row[u] = tgu
                cu = si_row[u] * tgu
                if layer > 0:
                    cu += si_row[units + u] * c[layer - 1, i, u]
                c_row[u] = cu
        _tanh(c[layer].reshape(cells), tc[layer].reshape(cells), nb * units, ebuf, fbuf)
        for i in range(nb):
            si_row, tc_row = s[layer, i], tc[layer, i]
            for u in range(units):
                hs[layer, i, u] = si_row[3 * units + u] * tc_row[u]
        _head(hs[layer], ht, head_b, o, k_l, nb, lp, p, sh, ebuf, fbuf)
        for i in range(nb):
            if layer + 1 < num_layers:
                emb_w = _param(wrow, po, 3 + 2 * num_layers + layer, k_l, emb)
                eb = po[3 + 3 * num_layers - 1 + layer]
                for e in range(emb):
                    xh[layer + 1, i, e] = 0.0
                if feed_probs:
                    for kk in range(k_l):
                        a = p[i, o + kk]
                        for e in range(emb):
                            xh[layer + 1, i, e] += a * emb_w[kk, e]
                else:
                    row = act[i, layer]
                    for e in range(emb):
                        xh[layer + 1, i, e] = emb_w[row, e]
                for e in range(emb):
                    xh[layer + 1, i, e] += wrow[eb + e]
                for u in range(units):
                    xh[layer + 1, i, emb + u] = hs[layer, i, u]


@njit(cache=True, fastmath=FLAGS, error_model="numpy")
def _loss_grad(algo, sampled, ew, clip, div_w, slack, radices, coff, act, sc, nb, lp, p, g, pair):
    """``dL/dlog p`` ``(nb, C)`` of the minibatch loss (Eq. 7 or 9, entropy, diversity)."""
    num_layers = radices.shape[0]
    choices = lp.shape[1]
    lo, hi = 1.0 - clip, 1.0 + clip
    for i in range(nb):
        logp = 0.0
        for layer in range(num_layers):
            logp += lp[i, coff[layer] + act[i, layer]]
        adv = sc[i, 1]
        if algo == PPO:
            ratio = math.exp(logp - sc[i, 0])
            clipped = min(max(ratio, lo), hi)
            inside = 1.0 if lo <= ratio <= hi else 0.0
            r1, r2 = ratio * adv, clipped * adv
            # the min of the clipped surrogate: its gradient splits on ties (as torch.minimum)
            if r1 < r2:
                mask = 1.0
            elif r1 > r2:
                mask = inside
            else:
                mask = 0.5 + 0.5 * inside
            coef = -(sc[i, 2] / nb) * adv * mask * ratio
        else:
            coef = -(sc[i, 2] / nb) * adv
        if sampled:
            coef += ew / nb
        for k in range(choices):
            g[i, k] = 0.0
        for layer in range(num_layers):
            g[i, coff[layer] + act[i, layer]] = coef
        if not sampled:
            for k in range(choices):
                g[i, k] += (ew / nb) * p[i, k] * (lp[i, k] + 1.0)
    if algo == DIVERSE and nb >= 2:
        weight = div_w / (nb * (nb - 1) // 2) / num_layers
        for i in range(nb):
            for j in range(nb):
                pair[i, j] = 0.0
        for i in range(nb):
            for j in range(i + 1, nb):
                sim = 0.0
                for k in range(choices):
                    sim += p[i, k] * p[j, k]
                if sim / num_layers - slack > 0:
                    pair[i, j] = weight
                    pair[j, i] = weight
        for i in range(nb):
            for k in range(choices):
                acc = ZERO
                for j in range(nb):
                    acc += pair[i, j] * p[j, k]
                g[i, k] += acc * p[i, k]


@njit(cache=True, fastmath=FLAGS, error_model="numpy")
def _backward(
    wrow, grad, po, radices, coff, units, emb, feed_probs, hard, st, act, nb, xh, s, tg, c, tc, hs, p, g, ht,
    w,
):  # fmt: skip
    """Flat gradient (into ``grad``) given ``g = dL/dlog p``; ``ht``: the transposed head
    weights (:func:`_transpose_heads`); ``w``: scratch arrays."""
    dz, dxh, dh, dcn, gl, dlog, gt, ones = w
    num_layers = radices.shape[0]
    gates = 4 * units
    width = emb + units
    wu = _param(wrow, po, 0, width, gates)
    for q in range(grad.shape[0]):
        grad[q] = 0.0
    for q in range(gt.shape[0]):
        for u in range(units):
            gt[q, u] = 0.0
    for layer in range(num_layers - 1, -1, -1):
        k_l = radices[layer]
        o = coff[layer]
        for i in range(nb):
            for kk in range(k_l):
                gl[i, kk] = g[i, o + kk]
        if layer + 1 < num_layers:  # paths through the next layer's input (dx_next = dxh[:, :emb])
            ew_i = 3 + 2 * num_layers + layer
            emb_w = _param(wrow, po, ew_i, k_l, emb)
            g_emb_w = _param(grad, po, ew_i, k_l, emb)
            g_emb_b = po[3 + 3 * num_layers - 1 + layer]
            for i in range(nb):
                if feed_probs:
                    for kk in range(k_l):
                        acc = ZERO
                        for e in range(emb):
                            acc += dxh[i, e] * emb_w[kk, e]
                        pk = p[i, o + kk]
                        gl[i, kk] += acc * pk
                        for e in range(emb):
                            g_emb_w[kk, e] += pk * dxh[i, e]
                else:
                    row = act[i, layer]
                    for e in range(emb):
                        g_emb_w[row, e] += dxh[i, e]
                for e in range(emb):
                    grad[g_emb_b + e] += dxh[i, e]
        g_head_b = po[3 + num_layers + layer]
        for i in range(nb):
            total = 0.0
            for kk in range(k_l):
                total += gl[i, kk]
            for kk in range(k_l):
                dlog[i, kk] = gl[i, kk] - p[i, o + kk] * total
                grad[g_head_b + kk] += dlog[i, kk]
            for u in range(units):  # dh from the next step
                dh[i, u] = dxh[i, emb + u] if layer + 1 < num_layers else ZERO
            hrow, dhrow = hs[layer, i], dh[i]
            for kk in range(k_l):
                a, hw_row, gt_row = dlog[i, kk], ht[o + kk], gt[o + kk]
                for u in range(units):
                    dhrow[u] += a * hw_row[u]
                    gt_row[u] += a * hrow[u]
            for u in range(units):
                si = s[layer, i, u]
                sf = s[layer, i, units + u]
                so = s[layer, i, 3 * units + u]
                tcu, tgu = tc[layer, i, u], tg[layer, i, u]
                dcu = dh[i, u] * so * (ONE - tcu * tcu)
                if layer + 1 < num_layers:
                    dcu += dcn[i, u]
                if hard:
                    dz[layer, i, 3 * units + u] = dh[i, u] * tcu * _hard_slope(so)
                    dz[layer, i, u] = dcu * tgu * _hard_slope(si)
                else:
                    dz[layer, i, 3 * units + u] = dh[i, u] * tcu * so * (ONE - so)
                    dz[layer, i, u] = dcu * tgu * si * (ONE - si)
                dz[layer, i, 2 * units + u] = dcu * si * (ONE - tgu * tgu)
                if layer > 0 and hard:
                    dz[layer, i, units + u] = dcu * c[layer - 1, i, u] * _hard_slope(sf)
                elif layer > 0:  # as written: another grouping of the products rounds otherwise
                    dz[layer, i, units + u] = dcu * c[layer - 1, i, u] * sf * (ONE - sf)
                else:
                    dz[layer, i, units + u] = 0.0
                dcn[i, u] = dcu * sf  # dc of the previous step
        # dxh = dz @ WU^T (only the input part at layer 0, which starts from h = 0)
        inputs = emb if layer == 0 else width
        for k in range(inputs):
            wk = wu[k]
            for i in range(nb):
                dxh[i, k] = _dot(dz[layer, i], wk)
    _transpose_heads(grad, po, radices, coff, units, gt, np.bool_(True))
    g_wu = _param(grad, po, 0, width, gates)
    g_b = grad[po[1] : po[1] + gates]
    for layer in range(num_layers):
        inputs = emb if layer == 0 else width
        rows = dz[layer]
        for k in range(inputs):
            _axpy_rows(g_wu[k], xh[layer, :, k], rows, 0, nb)
        _axpy_rows(g_b, ones[:, 0], rows, 0, nb)  # a column, as above: one compiled _axpy_rows
    if feed_probs:
        state_dim = st.shape[1]
        g_start = _param(grad, po, 2, state_dim, emb)
        for i in range(nb):
            for k in range(state_dim):
                a = st[i, k]
                for e in range(emb):
                    g_start[k, e] += a * dxh[i, e]
    else:
        g_start = _param(grad, po, 2, 1, emb)
        for i in range(nb):
            for e in range(emb):
                g_start[0, e] += dxh[i, e]


@njit(cache=True, fastmath=FLAGS, error_model="numpy")
def _adam(wrow, m, v, grad, step, lr0, decay):
    """One Adam step (Keras: lr / (1 + decay * step), bias-corrected), in place; the
    step size is computed in float64, the update in float32."""
    t = step + 1.0
    lr = lr0 / (1.0 + decay * step) * math.sqrt(1.0 - BETA2**t) / (1.0 - BETA1**t)
    rate, b1, b2, eps = F(lr), F(BETA1), F(BETA2), F(EPS)
    c1, c2 = F(1.0 - BETA1), F(1.0 - BETA2)
    # the new moments are used from registers, not read back from m and v: reading back a
    # vector just stored stalls store forwarding when the arrays sit at 16 bytes mod 64
    # (numpy's placement; 10.7 us an Adam step instead of 3.6 us on this machine). The
    # engine's torch tensors are 64-byte aligned, where both forms run alike; same bits.
    for q in range(wrow.shape[0]):
        gq = grad[q]
        mq = m[q] * b1 + gq * c1
        vq = v[q] * b2 + gq * c2 * gq
        m[q], v[q] = mq, vq
        wrow[q] -= rate * mq / (math.sqrt(vq) + eps)


@njit(cache=True, inline="always", fastmath=FLAGS, error_model="numpy")
def _copy_row(dst, i, src, row):
    """``dst[i] = src[row]`` for 2-D arrays of equal width."""
    for k in range(dst.shape[1]):
        dst[i, k] = src[row, k]


@njit(cache=True, fastmath=FLAGS, error_model="numpy")
def _first_equal_rows(key):
    """``cls[n]``: the first row of ``key`` equal to row ``n``."""
    size = key.shape[0]
    cls = np.empty(size, dtype=np.int64)
    for a in range(size):
        cls[a] = a
        for b in range(a):
            if cls[b] != b:
                continue
            same = True
            for k in range(key.shape[1]):
                if key[a, k] != key[b, k]:
                    same = False
                    break
            if same:
                cls[a] = b
                break
    return cls


@njit(cache=True, fastmath=FLAGS, error_model="numpy")
def _take(orders, epoch, lo, nb, cls, state, actions, rows, umap, ukey, nu, st, act):
    """Add minibatch ``orders[epoch, lo:lo + nb]`` to the list of distinct forward passes
    ``ukey[:nu]`` (their inputs in ``st, act``); ``rows[i]``: sample ``i``'s buffer row,
    ``umap[i]``: its pass. Returns the new ``nu``."""
    for i in range(nb):
        r = orders[epoch, lo + i]
        rows[i] = r
        j = 0
        while j < nu and ukey[j] != cls[r]:
            j += 1
        if j == nu:
            ukey[nu] = cls[r]
            _copy_row(st, nu, state, r)
            _copy_row(act, nu, actions, r)
            nu += 1
        umap[i] = j
    return nu


@njit(cache=True, nogil=True, fastmath=FLAGS, error_model="numpy")
def update_run(wrow, m, v, step0, state, actions, old, scal, orders, radices, coff, po, units, emb,
               feed_probs, hard, algo, sampled, ew, clip, lr0, decay, kl_stop, batch, div_w,
               slack):  # fmt: skip
    """One update of one run: up to ``orders.shape[0]`` epochs over the buffer.

    ``state (N, S)``, ``actions (N, L)``, ``old (N, C)`` (the sampling probabilities),
    ``scal (N, 4)`` = (old log pi, advantage, scale, sum old log old) of the ``N`` buffered
    samples; ``orders (E, N)``: the sample order of each epoch. After each step the mean
    KL(old || new) of the epoch's minibatches so far is checked; the update stops once it
    exceeds ``kl_stop`` (``kl_stop < 0``: never). Returns the number of steps taken.

    Forward passes are shared: samples with the same inputs get one between them, and the
    KL check's forward pass on a minibatch (after its step) is one call with the next
    minibatch's forward pass (before its step, with the same parameters).
    """
    size = state.shape[0]
    num_layers = radices.shape[0]
    choices = old.shape[1]
    bs = batch if batch > 0 else size
    rows_max = 2 * bs  # distinct forward passes at once: this minibatch's and the next's
    gates, width, widest = 4 * units, emb + units, 0
    for k_l in radices:  # a loop: radices.max() compiles numba's reduction machinery (~0.6 s)
        widest = max(widest, k_l)
    # forward caches, a row per distinct forward pass
    xh = np.zeros((num_layers, rows_max, width), dtype=F)
    s = np.empty((num_layers, rows_max, gates), dtype=F)
    tg = np.empty((num_layers, rows_max, units), dtype=F)
    c = np.empty((num_layers, rows_max, units), dtype=F)
    tc = np.empty((num_layers, rows_max, units), dtype=F)
    hs = np.empty((num_layers, rows_max, units), dtype=F)
    lp = np.empty((rows_max, choices), dtype=F)
    p = np.empty((rows_max, choices), dtype=F)
    z = np.empty((rows_max, gates), dtype=F)
    ht = np.empty((choices, units), dtype=F)
    sh = np.empty(rows_max * widest, dtype=F)
    ebuf = np.empty(rows_max * gates, dtype=F)
    fbuf = np.empty(rows_max * gates, dtype=F)
    st = np.empty((rows_max, state.shape[1]), dtype=F)
    act = np.empty((rows_max, num_layers), dtype=np.int64)
    ukey = np.empty(rows_max, dtype=np.int64)
    # the minibatch's samples (slot ``cur``) and the next minibatch's (slot ``1 - cur``)
    rows = np.empty((2, bs), dtype=np.int64)
    umap = np.empty((2, bs), dtype=np.int64)
    act_s = np.empty((bs, num_layers), dtype=np.int64)
    sc = np.empty((bs, 4), dtype=F)
    lp_s = np.empty((bs, choices), dtype=F)
    p_s = np.empty((bs, choices), dtype=F)
    # loss and backward scratch
    g = np.empty((bs, choices), dtype=F)
    gu = np.empty((bs, choices), dtype=F)
    pair = np.empty((bs, bs), dtype=F)
    grad = np.empty(wrow.shape[0], dtype=F)
    work = (
        np.empty((num_layers, bs, gates), dtype=F),
        np.empty((bs, width), dtype=F),
        np.empty((bs, units), dtype=F),
        np.zeros((bs, units), dtype=F),
        np.empty((bs, widest), dtype=F),
        np.empty((bs, widest), dtype=F),
        np.empty((choices, units), dtype=F),
        np.ones((bs, 1), dtype=F),
    )
    # a sample's forward pass is a function of its state vector alone ("probs" feed) or of
    # its choices alone ("action" feed), so samples of equal keys share a forward and a
    # backward pass (which is linear in dL/dlog p): a sample drawn twice into a bootstrap
    # minibatch, and, with the "action" feed, a settled run's repeated architecture
    cls = _first_equal_rows(state) if feed_probs else _first_equal_rows(actions)
    per_epoch = (size + bs - 1) // bs
    total = orders.shape[0] * per_epoch
    if total == 0:
        return 0
    # integer and flag arguments as variables, not literals: numba compiles a callee once
    # per argument type, and a literal is a type of its own (~1 s more compilation)
    first, to_rows = np.int64(0), np.bool_(False)
    _transpose_heads(wrow, po, radices, coff, units, ht, to_rows)
    cur = 0
    nb = min(bs, size)
    nu = _take(orders, first, first, nb, cls, state, actions, rows[cur], umap[cur], ukey, first, st, act)
    # fmt: off
    _forward(wrow, po, radices, coff, units, emb, feed_probs, hard, st, act, nu,
             xh, s, tg, c, tc, hs, lp, p, z, ht, sh, ebuf, fbuf)
    # fmt: on
    steps = 0
    kl_sum = 0.0
    for q in range(total):
        epoch, lo = q // per_epoch, (q % per_epoch) * bs
        if lo == 0:
            kl_sum = 0.0
        # element loops: a row assignment (act_s[i] = actions[row]) would pull in the string
        # formatting of numba's shape-mismatch message, seconds of compilation
        for i in range(nb):
            r, j = rows[cur, i], umap[cur, i]
            _copy_row(act_s, i, actions, r)
            _copy_row(sc, i, scal, r)
            _copy_row(lp_s, i, lp, j)
            _copy_row(p_s, i, p, j)
        _loss_grad(algo, sampled, ew, clip, div_w, slack, radices, coff, act_s, sc, nb, lp_s, p_s, g, pair)
        for j in range(nu):
            for k in range(choices):
                gu[j, k] = ZERO
        for i in range(nb):
            j = umap[cur, i]
            for k in range(choices):
                gu[j, k] += g[i, k]
        # fmt: off
        _backward(wrow, grad, po, radices, coff, units, emb, feed_probs, hard, st, act, nu,
                  xh, s, tg, c, tc, hs, p, gu, ht, work)
        # fmt: on
        _adam(wrow, m, v, grad, step0 + steps, lr0, decay)
        _transpose_heads(wrow, po, radices, coff, units, ht, to_rows)
        steps += 1
        # the next minibatch's distinct passes first (its backward pass takes rows [0, nu)),
        # then this one's for the KL check
        nu = nb_next = nu_next = 0
        if q + 1 < total:
            lo_next = ((q + 1) % per_epoch) * bs
            nb_next = min(bs, size - lo_next)
            epoch_next = (q + 1) // per_epoch
            # fmt: off
            nu = _take(orders, epoch_next, lo_next, nb_next, cls, state, actions,
                       rows[1 - cur], umap[1 - cur], ukey, first, st, act)
            # fmt: on
            nu_next = nu
        if kl_stop >= 0:
            nu = _take(orders, epoch, lo, nb, cls, state, actions, rows[cur], umap[cur], ukey, nu, st, act)
        if nu > 0:
            # fmt: off
            _forward(wrow, po, radices, coff, units, emb, feed_probs, hard, st, act, nu,
                     xh, s, tg, c, tc, hs, lp, p, z, ht, sh, ebuf, fbuf)
            # fmt: on
        if kl_stop >= 0:
            kl = 0.0
            for i in range(nb):
                kl += sc[i, 3] - _dot(old[rows[cur, i]], lp[umap[cur, i]])
            kl_sum += kl / nb
            if kl_sum / (q % per_epoch + 1) > kl_stop:
                return steps
        cur, nb, nu = 1 - cur, nb_next, nu_next
    return steps


@njit(cache=True, nogil=True, error_model="numpy")
def sample_run(
    wrow, po, radices, coff, units, emb, feed_probs, hard, start, uniforms, states, actions, probs
):
    """Sample ``n = uniforms.shape[0]`` architectures of one run, in float64.

    The computation of :meth:`~bionas_bench.controllers.lstm_policy.Net.rollout` (the
    torch reference, which it is tested against) for one run: the float32 parameters
    ``wrow`` taken exactly as float64, layer ``l``'s choice the number of cumulative
    probabilities below ``uniforms[j, l]`` (inverse CDF). ``"probs"`` feed: architecture
    ``j`` starts from the state ``start`` (``j = 0``) or architecture ``j - 1``'s last-layer
    probabilities (the original code's chain); ``"action"`` feed: from the learned start
    vector (``states`` gets zeros). Fills ``states (n, S)``, ``actions (n, L)`` and
    ``probs (n, C)``.
    """
    num_layers = radices.shape[0]
    gates, width = 4 * units, emb + units
    state_dim = start.shape[0]
    w = wrow.astype(np.float64)
    wu = w[po[0] : po[0] + width * gates].reshape((width, gates))
    bias = w[po[1] : po[1] + gates]
    xh = np.empty(width)
    z = np.empty(gates)
    c = np.empty(units)
    widest = 0
    for k_l in radices:
        widest = max(widest, k_l)
    logit = np.empty(widest)
    st = start.copy()
    for j in range(uniforms.shape[0]):
        for k in range(width):
            xh[k] = 0.0
        for u in range(units):
            c[u] = 0.0
        if feed_probs:
            w_start = w[po[2] : po[2] + state_dim * emb].reshape((state_dim, emb))
            for k in range(state_dim):
                states[j, k] = st[k]
                for e in range(emb):
                    xh[e] += st[k] * w_start[k, e]
        else:
            for k in range(state_dim):
                states[j, k] = 0.0
            for e in range(emb):
                xh[e] = w[po[2] + e]
        for layer in range(num_layers):
            k_l, o = radices[layer], coff[layer]
            for q in range(gates):
                z[q] = bias[q]
            for k in range(width):
                a, row = xh[k], wu[k]
                for q in range(gates):
                    z[q] += a * row[q]
            for u in range(units):
                if hard:
                    ig = min(max(0.2 * z[u] + 0.5, 0.0), 1.0)
                    fg = min(max(0.2 * z[units + u] + 0.5, 0.0), 1.0)
                    og = min(max(0.2 * z[3 * units + u] + 0.5, 0.0), 1.0)
                else:
                    ig = 1.0 / (1.0 + math.exp(-z[u]))
                    fg = 1.0 / (1.0 + math.exp(-z[units + u]))
                    og = 1.0 / (1.0 + math.exp(-z[3 * units + u]))
                c[u] = fg * c[u] + ig * math.tanh(z[2 * units + u])
                xh[emb + u] = og * math.tanh(c[u])
            head_w = w[po[3 + layer] : po[3 + layer] + units * k_l].reshape((units, k_l))
            head_b = po[3 + num_layers + layer]
            top = -np.inf
            for kk in range(k_l):
                acc = w[head_b + kk]
                for u in range(units):
                    acc += xh[emb + u] * head_w[u, kk]
                logit[kk] = acc
                top = max(top, acc)
            total = 0.0
            for kk in range(k_l):
                total += math.exp(logit[kk] - top)
            lse = math.log(total)
            cumulative, choice = 0.0, 0
            for kk in range(k_l):
                pk = math.exp((logit[kk] - top) - lse)
                probs[j, o + kk] = pk
                cumulative += pk
                if cumulative < uniforms[j, layer]:
                    choice += 1
            choice = min(choice, k_l - 1)
            actions[j, layer] = choice
            if layer + 1 < num_layers:
                lo = po[3 + 2 * num_layers + layer]
                emb_w = w[lo : lo + k_l * emb].reshape((k_l, emb))
                emb_b = po[3 + 3 * num_layers - 1 + layer]
                for e in range(emb):
                    xh[e] = w[emb_b + e]
                if feed_probs:
                    for kk in range(k_l):
                        pk = probs[j, o + kk]
                        for e in range(emb):
                            xh[e] += pk * emb_w[kk, e]
                else:
                    for e in range(emb):
                        xh[e] += emb_w[choice, e]
        if feed_probs:
            last = coff[num_layers - 1]
            for k in range(state_dim):
                st[k] = probs[j, last + k]


def sample_runs(threads: int, flat, starts, uniforms, states, actions, probs, *shared: Any) -> None:
    """:func:`sample_run` for every run ``r`` of the leading axis of ``flat, starts,
    uniforms, states, actions, probs`` (``shared``: its arguments from ``po`` to
    ``hard``), on up to ``threads`` threads."""

    def one(r: int) -> None:
        sample_run(flat[r], *shared, starts[r], uniforms[r], states[r], actions[r], probs[r])

    _spread(threads, list(range(flat.shape[0])), one)


def _run(r: int, args: tuple) -> None:
    """:func:`update_run` for run ``r`` of ``args`` (:func:`update_runs`' arguments).

    A Python call per run, not a compiled loop over runs: numba re-optimises everything a
    compiled function calls as part of that function, so a compiled loop above
    :func:`update_run` cost ~5 s more compilation on first use, against a few
    microseconds of dispatch per run and update here.
    """
    flat, m, v, steps, state, actions, old, scal, orders, *shared, taken = args
    per_run = (flat[r], m[r], v[r], steps[r], state[r], actions[r], old[r], scal[r], orders[r])
    taken[r] = update_run(*per_run, *shared)
    steps[r] += taken[r]


def update_runs(threads: int, *args: Any, cost: np.ndarray | None = None) -> None:
    """:func:`update_run` for every run ``r`` of the leading axis of ``flat, m, v, steps,
    state, actions, old, scal, orders`` (updated in place; ``taken (R,)`` receives each
    run's step count), on up to ``threads`` threads.

    Run costs are heavy-tailed (a settled run takes all 900 steps, others stop after a
    few), so the runs are handed out one at a time, costliest first by ``cost`` (a
    prediction, e.g. each run's steps in the previous update), to whichever thread is
    free (a static split of the runs over 2 threads took ~18 % longer than an even split
    in the paper's protocol). A run's result does not depend on its thread; several
    callers may run at once (the compiled update holds no shared state; callers share
    the threads of :func:`_pool`).
    """
    runs = args[0].shape[0]
    order = np.argsort(-cost, kind="stable") if cost is not None else np.arange(runs)
    _spread(threads, order.tolist(), lambda r: _run(r, args))


_POOLS: dict[tuple[int, int], ThreadPoolExecutor] = {}  # (process id, threads) -> pool
_POOLS_LOCK = threading.Lock()


def _pool(threads: int) -> ThreadPoolExecutor:
    """This process's pool of ``threads`` threads, kept between calls (under cProfile,
    starting two threads per call cost ~5 ms, once per episode and per update). Keyed by
    process id: a forked child inherits the dict but not the threads."""
    key = (os.getpid(), threads)
    with _POOLS_LOCK:
        if key not in _POOLS:
            _POOLS[key] = ThreadPoolExecutor(threads, thread_name_prefix="bionas-pg")
        return _POOLS[key]


def _spread(threads: int, order: list[int], call: Callable[[int], None]) -> None:
    """``call(r)`` for every ``r`` of ``order``, handed out one at a time in that order to
    whichever of up to ``threads`` threads is free; returns when all are done."""
    threads = max(1, min(threads, len(order)))
    if threads == 1:
        for r in order:
            call(r)
        return
    queue = iter(order)
    lock, stop = threading.Lock(), threading.Event()

    def work() -> None:
        while not stop.is_set():
            with lock:
                r = next(queue, None)
            if r is None:
                return
            call(r)

    pool = _pool(threads)
    futures = [pool.submit(work) for _ in range(threads)]
    try:
        for done in futures:
            done.result()
    except BaseException:  # Ctrl-C: the threads finish the run they hold and take no more
        stop.set()
        wait(futures)
        raise
