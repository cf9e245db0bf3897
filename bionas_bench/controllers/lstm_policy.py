"""The BioNAS controller network: an LSTM with one softmax head per searched layer.

Zhang et al. (2019), section 2.3: an LSTM (50 units, inputs embedded to 8 dimensions)
makes one decision per layer of the model space; a dense softmax head per layer maps the
LSTM output to that layer's choice probabilities. The parameters of many independent
runs are *stacked* along a leading run axis ``R`` so that ``R`` controllers advance with
batched matrix products (``torch.bmm``); every tensor below is ``(R, ...)``.

Two ways to feed the LSTM (``feed``), see the README of the reference data:

- ``"action"`` (the paper's text): the first input is a learned start vector, each next
  input is the embedding of the choice just sampled; the architectures of one episode are
  independent draws.
- ``"probs"`` (the original code): the first input is a linear map (no bias) of a random
  state vector (a softmax of Uniform(0, 5) draws, one per choice of the *last* layer),
  each next input is a dense map of the previous layer's probability vector; the state of
  the next architecture of an episode is the last layer's probability vector of the
  previous one. The layer probabilities are then a deterministic function of the state.

Gates (``gate``): the input, forget and output gates are ``"sigmoid"`` (the usual LSTM
and Keras >= 2.3) or ``"hard_sigmoid"``, ``clip(0.2 z + 0.5, 0, 1)``, the default
``recurrent_activation`` of the Keras LSTM layer before 2.3.0 (September 2019), which
the original code (2018-19, ``keras>=2.0`` with TensorFlow 1, its Keras version not
recorded) most likely ran with. The candidate and the output use tanh either way.

Initialisation mirrors Keras defaults (Glorot-uniform kernels, orthogonal recurrent
kernel, zero biases with forget-gate bias 1) and is drawn from a per-run numpy
``Generator``, so a run's network depends only on its seed.

Precision: the trainable state (parameters and Adam moments) is float32 (``PARAM_DTYPE``),
as in the original Keras controller, and is trained in float32 by the compiled update.
The forward passes here compute in float64 (``DTYPE``) from those float32 values (every
float32 is a float64 exactly), so sampling gives the same numbers for a run alone and
inside a batch, whatever kernels torch picks for the batch's shape.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

DTYPE = torch.float64  #: what the forward passes compute in
PARAM_DTYPE = torch.float32  #: what the parameters and Adam moments are stored in
FEEDS = ("action", "probs")
GATES = ("sigmoid", "hard_sigmoid")
#: largest LSTM width and embedding size a controller accepts (the paper's are 50 and 8):
#: the recurrent kernel grows as its square, ~270 MB per run at 4096 units, so a typo with
#: more digits would exhaust memory while the first run is drawn
MAX_SIZE = 4096


@dataclass(frozen=True)
class NetShape:
    """Sizes of the controller network."""

    radices: tuple[int, ...]
    units: int = 50
    embedding_dim: int = 8
    feed: str = "probs"
    gate: str = "sigmoid"

    @property
    def num_layers(self) -> int:
        return len(self.radices)

    @property
    def state_dim(self) -> int:
        """Length of the random state vector of the ``"probs"`` feed (last layer's radix)."""
        return self.radices[-1]

    def names(self) -> list[str]:
        """Parameter names, in a fixed order (the order of :func:`init_params`)."""
        names = ["WU", "b", "start"]
        names += [f"head_W{l}" for l in range(self.num_layers)]
        names += [f"head_b{l}" for l in range(self.num_layers)]
        names += [f"emb_W{l}" for l in range(self.num_layers - 1)]
        names += [f"emb_b{l}" for l in range(self.num_layers - 1)]
        return names


def hard_sigmoid(z: torch.Tensor) -> torch.Tensor:
    """Keras's ``hard_sigmoid``: ``clip(0.2 z + 0.5, 0, 1)``, slope 0.2 inside, 0 outside."""
    return (0.2 * z + 0.5).clamp(0.0, 1.0)


def _glorot(rng: np.random.Generator, fan_in: int, fan_out: int) -> np.ndarray:
    limit = np.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-limit, limit, size=(fan_in, fan_out))


def _orthogonal(rng: np.random.Generator, rows: int, cols: int) -> np.ndarray:
    a = rng.standard_normal((max(rows, cols), min(rows, cols)))
    q, r = np.linalg.qr(a)
    q = q * np.sign(np.diag(r))
    return q if rows >= cols else q.T


def _init_one(shape: NetShape, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """One run's parameters (Keras-style initialisation), drawn from ``rng`` in a fixed order."""
    h, e = shape.units, shape.embedding_dim
    bias = np.zeros((1, 4 * h))
    bias[0, h : 2 * h] = 1.0  # unit forget bias (gate order i, f, g, o)
    start = _glorot(rng, shape.state_dim, e) if shape.feed == "probs" else rng.uniform(-0.05, 0.05, (1, e))
    # input and recurrent kernels stacked, so one step is one matmul of [x, h]
    kernel = np.concatenate([_glorot(rng, e, 4 * h), _orthogonal(rng, h, 4 * h)], axis=0)
    p = {"WU": kernel, "b": bias, "start": start}
    for l, k in enumerate(shape.radices):
        p[f"head_W{l}"] = _glorot(rng, h, k)
        p[f"head_b{l}"] = np.zeros((1, k))
    for l, k in enumerate(shape.radices[:-1]):
        p[f"emb_W{l}"] = _glorot(rng, k, e)
        p[f"emb_b{l}"] = np.zeros((1, e))
    return p


def init_params(shape: NetShape, rngs: list[np.random.Generator]) -> torch.Tensor:
    """Stacked parameters flattened to ``(R, P)`` (order of :meth:`NetShape.names`), one run
    per rng; drawn in float64 and stored rounded to ``PARAM_DTYPE``."""
    per_run = [_init_one(shape, rng) for rng in rngs]
    flat = [np.concatenate([p[n].ravel() for n in shape.names()]) for p in per_run]
    return torch.tensor(np.stack(flat), dtype=PARAM_DTYPE)


def param_shapes(shape: NetShape) -> list[tuple[int, ...]]:
    """Per-run shape of each parameter, in the order of :meth:`NetShape.names`."""
    h, e = shape.units, shape.embedding_dim
    shapes = [(e + h, 4 * h), (1, 4 * h), (shape.state_dim, e) if shape.feed == "probs" else (1, e)]
    shapes += [(h, k) for k in shape.radices] + [(1, k) for k in shape.radices]
    shapes += [(k, e) for k in shape.radices[:-1]] + [(1, e) for _ in shape.radices[:-1]]
    return shapes


def unflatten(shape: NetShape, flat: torch.Tensor) -> list[torch.Tensor]:
    """Views ``(R, ...)`` of each parameter of a flat ``(R, P)`` tensor (autograd flows to it)."""
    shapes = param_shapes(shape)
    sizes = [int(np.prod(s)) for s in shapes]
    return [
        part.view(flat.shape[0], *s) for part, s in zip(torch.split(flat, sizes, dim=1), shapes, strict=True)
    ]


class Net:
    """Forward passes of ``R`` stacked controllers (no state besides the parameter list)."""

    def __init__(self, shape: NetShape):
        self.shape = shape
        names = shape.names()
        self._index = {n: i for i, n in enumerate(names)}

    def _p(self, params: list[torch.Tensor], name: str) -> torch.Tensor:
        return params[self._index[name]]

    def first_input(self, params: list[torch.Tensor], state: torch.Tensor) -> torch.Tensor:
        """Step-0 input ``(R, B, E)``: the embedded state, or the learned start vector."""
        start = self._p(params, "start")
        if self.shape.feed == "probs":
            return torch.bmm(state, start)
        return start.expand(state.shape[0], state.shape[1], start.shape[-1])

    def cell(
        self, params: list[torch.Tensor], x: torch.Tensor, h: torch.Tensor, c: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One LSTM step on ``(R, B, .)`` tensors."""
        z = torch.baddbmm(self._p(params, "b"), torch.cat([x, h], dim=-1), self._p(params, "WU"))
        i, f, g, o = z.chunk(4, dim=-1)
        gate = hard_sigmoid if self.shape.gate == "hard_sigmoid" else torch.sigmoid
        c = gate(f) * c + gate(i) * torch.tanh(g)
        return gate(o) * torch.tanh(c), c

    def log_probs(self, params: list[torch.Tensor], layer: int, h: torch.Tensor) -> torch.Tensor:
        """Log choice probabilities ``(R, B, radix)`` of ``layer`` from the LSTM output."""
        logits = torch.baddbmm(self._p(params, f"head_b{layer}"), h, self._p(params, f"head_W{layer}"))
        return torch.log_softmax(logits, dim=-1)

    def next_input(self, params: list[torch.Tensor], layer: int, feed_vec: torch.Tensor) -> torch.Tensor:
        """Input of the step after ``layer``: a dense map of a probability or one-hot vector."""
        return torch.baddbmm(self._p(params, f"emb_b{layer}"), feed_vec, self._p(params, f"emb_W{layer}"))

    def _zeros(self, params: list[torch.Tensor], runs: int, batch: int) -> torch.Tensor:
        return torch.zeros(runs, batch, self.shape.units, dtype=params[0].dtype)

    def rollout(
        self, params: list[torch.Tensor], state: torch.Tensor, uniforms: torch.Tensor
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Sample one architecture per ``(run, b)`` by inverse CDF on ``uniforms (R, B, L)``.

        Returns the choice indices ``(R, B, L)`` (int64) and the per-layer probabilities.
        """
        runs, batch = state.shape[0], state.shape[1]
        x = self.first_input(params, state)
        h = c = self._zeros(params, runs, batch)
        actions, probs = [], []
        for layer, k in enumerate(self.shape.radices):
            h, c = self.cell(params, x, h, c)
            p = self.log_probs(params, layer, h).exp()
            a = (torch.cumsum(p, dim=-1) < uniforms[..., layer : layer + 1]).sum(-1).clamp_(max=k - 1)
            actions.append(a)
            probs.append(p)
            if layer < self.shape.num_layers - 1:
                fed = p if self.shape.feed == "probs" else torch.nn.functional.one_hot(a, k).to(p.dtype)
                x = self.next_input(params, layer, fed)
        return torch.stack(actions, dim=-1), probs

    def evaluate(
        self, params: list[torch.Tensor], state: torch.Tensor, actions: torch.Tensor
    ) -> list[torch.Tensor]:
        """Per-layer log probabilities ``[(R, B, radix)]`` along the given architectures."""
        runs, batch = state.shape[0], state.shape[1]
        x = self.first_input(params, state)
        h = c = self._zeros(params, runs, batch)
        out = []
        for layer, k in enumerate(self.shape.radices):
            h, c = self.cell(params, x, h, c)
            logp = self.log_probs(params, layer, h)
            out.append(logp)
            if layer < self.shape.num_layers - 1:
                if self.shape.feed == "probs":
                    fed = logp.exp()
                else:
                    fed = torch.nn.functional.one_hot(actions[..., layer], k).to(logp.dtype)
                x = self.next_input(params, layer, fed)
        return out

    def probe(self, params: list[torch.Tensor]) -> list[torch.Tensor]:
        """Current per-layer probabilities ``[(R, radix)]`` without randomness.

        ``"probs"`` feed: the state is the uniform vector; ``"action"`` feed: the
        conditional probabilities along the greedy (argmax) path.
        """
        runs = params[0].shape[0]
        state = torch.full((runs, 1, self.shape.state_dim), 1.0 / self.shape.state_dim, dtype=DTYPE)
        x = self.first_input(params, state)
        h = c = self._zeros(params, runs, 1)
        out = []
        for layer, k in enumerate(self.shape.radices):
            h, c = self.cell(params, x, h, c)
            p = self.log_probs(params, layer, h).exp()
            out.append(p[:, 0])
            if layer < self.shape.num_layers - 1:
                fed = (
                    p
                    if self.shape.feed == "probs"
                    else torch.nn.functional.one_hot(p.argmax(-1), k).to(DTYPE)
                )
                x = self.next_input(params, layer, fed)
        return out
