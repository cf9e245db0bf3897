"""Policy-gradient controllers of BioNAS: ``ppo``, ``reinforce`` and ``diverse_pg``.

All three train the LSTM controller of :mod:`bionas_bench.controllers.lstm_policy`
(Zhang et al. 2019, "Automated neural architecture search with knowledge-guided ...",
section 2.3) on the rewards the sweep tells them; one ``tell`` is one *episode* (the
answer to one ``ask(n)`` of ``n`` architectures, the paper uses 3; a tell of part of an
ask is an episode of that part) and triggers an update.

Notation (per architecture ``a = (a_1..a_L)`` with reward ``R``)::

    log pi(a)   = sum_l log p_l(a_l)                                   (Eq. 6)
    b_e         = 0.2 * b_{e-1} + 0.8 * mean(R of episode e-1)         (b_1 = mean R of episode 1)
    A           = R - b_e                                              (advantage)
    REINFORCE:  L = -mean( s * A * log pi(a) )                         (Eq. 7)
    PPO:        rho = exp(log pi(a) - log pi_old(a))                   (Eq. 8)
                L = -mean( s * min(rho A, clip(rho, 1-0.2, 1+0.2) A) ) (Eq. 9)
    all:        L -= 0.001 * H,  H = entropy of the layer distributions

``s`` is 1 in the paper and ``|1/R|`` in the original code. The baseline is the original
code's exponential moving average that lags one episode.

PPO optimisation (original hyper-parameters): Adam, lr 0.1 with inverse-time decay per
optimiser step, ``lr_k = 0.1 / (1 + 0.999 k)`` (the original's Keras ``Adam(decay=0.999)``),
beta 0.9/0.999, eps 1e-7; a buffer of the last 15 entries; no update before 15 episodes
were told (``warmup_episodes``); up to 100 epochs over the buffer in minibatches of 5;
after every step the mean KL(old || new) over the epoch's minibatches so far is checked
and the update stops once it exceeds 0.01. ``pi_old`` is the policy that *sampled* each
buffered architecture (stored probabilities), as in the original.

Warm-up (``warmup``): the original's training loop finishes a buffer entry only once
it starts training, so its first 15 episodes become **one** entry of 45 samples whose
baseline is their own mean reward (``"pooled"``); the buffer keeps 15 *entries*, so the
updates of episodes 16-29 see 48 to 87 samples, and every later one 45. ``"episodes"``
(our reading of the paper's "buffer of 15 episodes") makes each episode its own entry
from the first, with the lagged baseline from episode 1 (``b_1`` = its own mean).

Where the original code departs from the paper (``variant``; each can be set alone):

====================  ==================================  ==================================
flag                  ``"paper"``                         ``"original_code"``
====================  ==================================  ==================================
``feed``              ``"action"``: next LSTM input =     ``"probs"``: step-0 input = random
                      embedding of the sampled choice;    state vector, next input = previous
                      learned start vector                layer's probability vector
``reward_scaling``    ``False``                           ``True``: surrogate times ``|1/R|``
``entropy``           ``"exact"``: sum_l H(p_l)           ``"sampled"``: -mean log p(a_l)
``minibatch``         ``"shuffle"`` (permutation)         ``"bootstrap"`` (draw N with
                                                          replacement each epoch)
``warmup``            ``"episodes"``                      ``"pooled"`` (see above)
====================  ==================================  ==================================

One more departure of the original code is not offered: its "sampled" entropy term
takes the log-probability of a choice drawn afresh from the current policy at each
training step; ours takes the buffered (sampling-time) choices, so that an update
draws no random numbers beyond its minibatch orders. With weight 0.001 its effect on
the gradient is small, but not of the same kind: a fresh draw makes the term's expected
gradient zero (the score-function identity), the buffered choices do not.

The LSTM's gates are a hyper-parameter of their own, not a variant flag (``gate``,
default ``"sigmoid"``): the original built its controller with Keras's ``LSTM`` and its
defaults, which before Keras 2.3.0 (September 2019) made the input, forget and output
gates hard sigmoids, ``clip(0.2 z + 0.5, 0, 1)``; its Keras version is not recorded, and
on the original table ``"hard_sigmoid"`` reproduced the paper's small-lambda contrast
less well than ``"sigmoid"`` (README, "Controllers: BioNAS PPO").

The original's "ratio as a product over layers" equals ``exp(sum_l log p - log p_old)``
(Eq. 8) up to rounding, so it is not a flag. The default variant is the original
code's, which produced the paper's figures (see the README's "Controllers: BioNAS PPO").

``recommend()`` is the original rule: per layer, argmax of the last value of a
window-10 simple moving average of the per-episode mean choice probabilities.
``policy()`` is the per-layer probabilities the last ``ask`` sampled from, averaged over
its architectures (before the first ``ask``: the network at a uniform state for the
``"probs"`` feed, along its greedy path for the ``"action"`` feed).

``diverse_pg`` transfers the idea of deep exploration networks (sample two candidates
per step and penalise their similarity above a slack with a hinge; cf. Hong et al. 2018,
"Diversity-driven exploration strategy for deep reinforcement learning", NeurIPS) to
architecture search: with ``P_l^i`` the layer-``l`` probabilities used to sample
architecture ``i`` of the episode, the similarity of two architectures is the chance
that their sampling distributions agree, averaged over layers,

    sim(i, j) = (1/L) sum_l < P_l^i, P_l^j >,
    L_div     = w_div * mean_{i<j} max(0, sim(i, j) - slack),

added to the REINFORCE loss (defaults ``w_div = 1.0``, ``slack = 0.5``): the controller
may concentrate until two draws agree on a layer with probability ``slack``, and is
pushed back beyond it, which keeps exploring without forbidding convergence.

Batched execution: :meth:`PolicyGradientController.batched` advances many runs with the
parameters stacked over runs (batched matmuls, per-run Adam state, per-run early
stopping via masks); every random draw of a run comes from its own numpy ``Generator``
in the same order as when the run is alone, so batched runs equal unbatched ones.

Training speed: one update of one run (all its epochs, steps and KL checks) is a single
compiled call (:mod:`~bionas_bench.controllers.pg_kernel`, numba); the runs of a batch
are spread over the caller's torch thread count (1 inside sweeps, whose cells run in
parallel processes). ``Engine.impl = "autograd"`` selects the torch-autograd reference
of the same update (float64 arithmetic on the float32 parameters; the compiled update
computes in float32, as the original Keras controller): one step's gradients agree to
float32 rounding, and 25 episodes of parameters to 1e-3 (both tested). The sample order of
every epoch an update might run is drawn from the run's rng before the update. Sampling
(``ask``) is compiled too (:func:`~bionas_bench.controllers.pg_kernel.sample_run`, float64
like the torch rollout it is tested against, which ``"autograd"`` uses).
"""

from __future__ import annotations

import contextlib
from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch

from bionas_bench.controllers import pg_kernel
from bionas_bench.controllers.base import (
    BatchedRuns,
    Controller,
    check,
    check_info,
    check_info_shapes,
    check_seeds,
    make_params,
    resolve_space,
)
from bionas_bench.controllers.lstm_policy import (
    DTYPE,
    FEEDS,
    GATES,
    MAX_SIZE,
    PARAM_DTYPE,
    Net,
    NetShape,
    init_params,
    param_shapes,
    unflatten,
)
from bionas_bench.errors import ControllerError
from bionas_bench.seeds import rng_from_seed
from bionas_bench.space import ModelSpace

VARIANTS: dict[str, dict[str, Any]] = {
    "paper": {
        "feed": "action",
        "reward_scaling": False,
        "entropy": "exact",
        "minibatch": "shuffle",
        "warmup": "episodes",
    },
    "original_code": {
        "feed": "probs",
        "reward_scaling": True,
        "entropy": "sampled",
        "minibatch": "bootstrap",
        "warmup": "pooled",
    },
}
ENTROPIES = ("exact", "sampled")
MINIBATCHES = ("shuffle", "bootstrap", "none")
WARMUPS = ("episodes", "pooled")
ADAM_BETAS = (0.9, 0.999)
ADAM_EPS = 1e-7
DEFAULT_VARIANT = "original_code"


# ---------------------------------------------------------------------- hyper-parameters
@dataclass(frozen=True)
class PPOParams:
    """Hyper-parameters of ``ppo`` (defaults: the original BioNAS settings)."""

    variant: str = DEFAULT_VARIANT
    feed: str | None = None  #: overrides the variant's feed ("action" | "probs")
    gate: str = "sigmoid"  #: LSTM input/forget/output gates: "sigmoid" | "hard_sigmoid" (see README)
    reward_scaling: bool | None = None  #: overrides: multiply the surrogate by |1/R|
    entropy: str | None = None  #: overrides: "exact" | "sampled"
    minibatch: str | None = None  #: overrides: "shuffle" | "bootstrap" | "none"
    warmup: str | None = None  #: overrides: "episodes" | "pooled"
    lstm_units: int = 50
    embedding_dim: int = 8
    lr: float = 0.1
    lr_decay: float = 0.999  #: inverse-time decay per optimiser step: lr / (1 + lr_decay * k)
    entropy_weight: float = 0.001
    baseline_decay: float = 0.2  #: weight of the previous baseline in the moving average
    clip: float = 0.2
    batch_size: int = 5  #: 0 = the whole buffer in one minibatch
    max_epochs: int = 100
    kl_stop: float | None = 0.01  #: None = never stop early
    buffer_episodes: int = 15  #: buffer entries kept: episodes (a pooled warm-up is one)
    warmup_episodes: int = 15  #: no update before this many episodes were told
    sma_window: int = 10

    def __post_init__(self) -> None:
        check(self.variant in VARIANTS, f"variant must be one of {sorted(VARIANTS)}, got {self.variant!r}")
        check(
            self.feed is None or self.feed in FEEDS, f"feed must be one of {FEEDS} or None, got {self.feed!r}"
        )
        check(self.gate in GATES, f"gate must be one of {GATES}, got {self.gate!r}")
        check(
            self.reward_scaling is None or isinstance(self.reward_scaling, bool),
            f"reward_scaling must be a bool or None, got {self.reward_scaling!r}",
        )
        check(
            self.entropy is None or self.entropy in ENTROPIES,
            f"entropy must be one of {ENTROPIES} or None, got {self.entropy!r}",
        )
        check(
            self.minibatch is None or self.minibatch in MINIBATCHES,
            f"minibatch must be one of {MINIBATCHES} or None, got {self.minibatch!r}",
        )
        check(
            self.warmup is None or self.warmup in WARMUPS,
            f"warmup must be one of {WARMUPS} or None, got {self.warmup!r}",
        )
        for name in ("lstm_units", "embedding_dim"):
            _check_int(self, name, 1, maximum=MAX_SIZE)
        for name in ("max_epochs", "buffer_episodes", "sma_window"):
            _check_int(self, name, 1)
        _check_int(self, "batch_size", 0)
        _check_int(self, "warmup_episodes", 1)
        _check_float(self, "lr", positive=True)
        _check_float(self, "lr_decay")
        _check_float(self, "entropy_weight")
        _check_float(self, "clip", positive=True)
        _check_float(self, "baseline_decay")
        check(self.baseline_decay <= 1, f"baseline_decay must be in [0, 1], got {self.baseline_decay!r}")
        if self.kl_stop is not None:
            _check_float(self, "kl_stop", positive=True)

    def setting(self, flag: str) -> Any:
        """The effective value of a variant flag (explicit override, else the variant's)."""
        value = getattr(self, flag)
        return VARIANTS[self.variant][flag] if value is None else value

    def in_effect(self) -> dict[str, Any]:
        """The variant's value of every flag left at None, for ``controllers list/show``.

        Without it ppo's default ``minibatch=None`` (the variant's "bootstrap") reads like
        reinforce's ``minibatch="none"`` (each sample once, in order), its opposite.
        """
        return {flag: value for flag, value in VARIANTS[self.variant].items() if getattr(self, flag) is None}


@dataclass(frozen=True)
class ReinforceParams(PPOParams):
    """Hyper-parameters of ``reinforce``: one full-batch step per episode on that episode."""

    minibatch: str | None = "none"  #: the episode's samples, each once (Eq. 7)
    batch_size: int = 0
    max_epochs: int = 1
    kl_stop: float | None = None
    buffer_episodes: int = 1
    warmup_episodes: int = 1


@dataclass(frozen=True)
class DiverseParams(ReinforceParams):
    """Hyper-parameters of ``diverse_pg``: REINFORCE plus the pairwise similarity hinge."""

    diversity_weight: float = 1.0
    slack: float = 0.5

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_float(self, "diversity_weight")
        _check_float(self, "slack")
        check(self.slack <= 1, f"slack must be in [0, 1], got {self.slack!r}")


def _check_int(params: Any, name: str, minimum: int, maximum: int | None = None) -> None:
    value = getattr(params, name)
    ok = isinstance(value, int | np.integer) and not isinstance(value, bool) and value >= minimum
    if maximum is None:
        check(ok, f"{name} must be an integer >= {minimum}, got {value!r}")
    else:
        check(
            ok and value <= maximum, f"{name} must be an integer from {minimum} to {maximum}, got {value!r}"
        )


def _check_float(params: Any, name: str, positive: bool = False) -> None:
    value = getattr(params, name)
    ok = isinstance(value, int | float | np.floating) and not isinstance(value, bool) and np.isfinite(value)
    ok = ok and (value > 0 if positive else value >= 0)
    check(ok, f"{name} must be a finite number {'> 0' if positive else '>= 0'}, got {value!r}")


# ---------------------------------------------------------------------- the engine
@dataclass
class Episode:
    """What one episode leaves in the buffer; every tensor is ``(R, n, ...)``."""

    state: torch.Tensor
    actions: torch.Tensor
    old_probs: list[torch.Tensor]
    old_logp: torch.Tensor
    advantage: torch.Tensor
    scale: torch.Tensor


class Engine:
    """``R`` independent policy-gradient runs with stacked parameters.

    ``algorithm`` is ``"ppo"``, ``"reinforce"`` or ``"diverse"``. A single controller is
    an engine with ``R = 1``; the batched form is the same engine with ``R = len(seeds)``.
    """

    def __init__(self, space: ModelSpace, rngs: list[np.random.Generator], params: PPOParams, algorithm: str):
        self.space = space
        self.rngs = rngs
        self.hp = params
        self.algorithm = algorithm
        feed = params.setting("feed")
        self.shape = NetShape(space.radices, params.lstm_units, params.embedding_dim, feed, params.gate)
        self.net = Net(self.shape)
        with single_thread():
            self.flat = init_params(self.shape, rngs)  # (R, P): every parameter of every run
        self.adam_m = torch.zeros_like(self.flat)
        self.adam_v = torch.zeros_like(self.flat)
        self.steps = torch.zeros(len(rngs), dtype=DTYPE)  # optimiser steps per run
        self.buffer: deque[Episode] = deque(maxlen=params.buffer_episodes)
        self.baseline: np.ndarray | None = None
        self.prev_mean: np.ndarray | None = None
        self.pooled: list[tuple[torch.Tensor, torch.Tensor, list[torch.Tensor], np.ndarray]] = []
        self.history: list[list[np.ndarray]] = []  # per episode: per layer (R, radix)
        self.sampled: list[np.ndarray] | None = None  # the last sample's mean probabilities
        self.episodes = 0
        self.num_updates = np.zeros(len(rngs), dtype=np.int64)  # optimiser steps taken, for diagnostics
        self.last_steps = np.zeros(len(rngs), dtype=np.int64)  # of the last update: its cost next time
        #: "compiled" (:mod:`pg_kernel`, the default) or "autograd" (the torch reference),
        #: for the update and for sampling
        self.impl = "compiled"
        self._radices = np.asarray(space.radices, dtype=np.int64)
        self._choice_offsets = np.concatenate([[0], np.cumsum(self._radices)]).astype(np.int64)
        sizes = [int(np.prod(s)) for s in param_shapes(self.shape)]
        self._param_offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)

    @property
    def runs(self) -> int:
        return len(self.rngs)

    @property
    def weights(self) -> list[torch.Tensor]:
        """Per-parameter ``(R, ...)`` float64 copies of the (float32) flat parameters."""
        return unflatten(self.shape, self.flat.to(DTYPE))

    # ------------------------------------------------------------------ sampling
    def sample(self, n: int) -> tuple[np.ndarray, torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        """Sample ``n`` architectures per run: ids ``(R, n)``, states, choices, probabilities."""
        num_layers, state_dim = self.shape.num_layers, self.shape.state_dim
        starts, uniforms = [], []
        for rng in self.rngs:  # per run, the same draws in the same order as alone
            if self.shape.feed == "probs":
                x = rng.uniform(0.0, 5.0, state_dim)
                starts.append(np.exp(x) / np.exp(x).sum())
            else:
                starts.append(np.zeros(state_dim))
            uniforms.append(rng.random((n, num_layers)))
        draw = self._sample_compiled if self.impl == "compiled" else self._sample_torch
        drawn = draw(np.stack(starts), np.stack(uniforms))
        self.sampled = [p.mean(dim=1).numpy() for p in drawn[3]]
        return drawn

    def _sample_torch(
        self, starts: np.ndarray, uniforms: np.ndarray
    ) -> tuple[np.ndarray, torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        """:meth:`sample` by the torch rollout (the reference of the compiled sampler)."""
        n = uniforms.shape[1]
        start = torch.tensor(starts, dtype=DTYPE)[:, None, :]
        u = torch.tensor(uniforms, dtype=DTYPE)
        with torch.no_grad(), single_thread():
            weights = self.weights
            if self.shape.feed == "probs":
                state, actions, probs = self._chained_rollout(weights, start, u)
            else:
                state = start.expand(-1, n, -1).contiguous()
                actions, probs = self.net.rollout(weights, state, u)
        ids = self.space.encode(actions.numpy())
        return np.asarray(ids, dtype=np.int64).reshape(self.runs, n), state, actions, probs

    def _sample_compiled(
        self, starts: np.ndarray, uniforms: np.ndarray
    ) -> tuple[np.ndarray, torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        """:meth:`sample` by :func:`~bionas_bench.controllers.pg_kernel.sample_run` (the
        same float64 computation as the torch rollout, ~3x faster), runs over threads."""
        n, num_layers = uniforms.shape[1], self.shape.num_layers
        states = np.empty((self.runs, n, self.shape.state_dim))
        actions = np.empty((self.runs, n, num_layers), dtype=np.int64)
        probs = np.empty((self.runs, n, int(self._radices.sum())))
        pg_kernel.sample_runs(
            torch.get_num_threads(),
            self.flat.numpy(),
            starts,
            uniforms,
            states,
            actions,
            probs,
            self._param_offsets,
            self._radices,
            self._choice_offsets,
            self.hp.lstm_units,
            self.hp.embedding_dim,
            self.shape.feed == "probs",
            self.shape.gate == "hard_sigmoid",
        )
        per_layer = [
            torch.from_numpy(np.ascontiguousarray(part))
            for part in np.split(probs, self._choice_offsets[1:-1], axis=-1)
        ]
        ids = np.asarray(self.space.encode(actions), dtype=np.int64).reshape(self.runs, n)
        return ids, torch.from_numpy(states), torch.from_numpy(actions), per_layer

    def _chained_rollout(
        self, weights: list[torch.Tensor], start: torch.Tensor, u: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        """Original code: the state of architecture j+1 is the last-layer probabilities of j."""
        state, states, actions, probs = start, [], [], []
        for j in range(u.shape[1]):
            a, p = self.net.rollout(weights, state, u[:, j : j + 1])
            states.append(state)
            actions.append(a)
            probs.append(p)
            state = p[-1]
        per_layer = [torch.cat([p[l] for p in probs], dim=1) for l in range(self.shape.num_layers)]
        return torch.cat(states, dim=1), torch.cat(actions, dim=1), per_layer

    # ------------------------------------------------------------------ learning
    def update(
        self, state: torch.Tensor, actions: torch.Tensor, probs: list[torch.Tensor], rewards: np.ndarray
    ) -> None:
        """Record one told episode (rewards ``(R, n)``) and train once enough are buffered."""
        self.history.append([p.mean(dim=1).numpy() for p in probs])
        self.episodes += 1
        if self.hp.setting("warmup") == "pooled" and self.episodes <= self.hp.warmup_episodes:
            # the original code: the warm-up episodes make one buffer entry, whose
            # baseline is the mean of all their rewards
            self.pooled.append((state, actions, probs, rewards))
            if self.episodes < self.hp.warmup_episodes:
                return
            baseline = np.concatenate([r for *_, r in self.pooled], axis=1).mean(axis=1)
            entry = _concat([self._episode(*episode, baseline) for episode in self.pooled])
            self.baseline, self.prev_mean, self.pooled = baseline, baseline, []
        else:
            mean = rewards.mean(axis=1)
            if self.baseline is None:
                baseline = mean
            else:
                decay = self.hp.baseline_decay
                baseline = decay * self.baseline + (1 - decay) * self.prev_mean
            self.baseline, self.prev_mean = baseline, mean
            entry = self._episode(state, actions, probs, rewards, baseline)
        self.buffer.append(entry)
        if self.episodes >= self.hp.warmup_episodes:
            threads = torch.get_num_threads()  # the caller's thread budget (1 inside sweeps)
            with single_thread():
                if self.impl == "compiled":
                    self._train_compiled(threads)
                else:
                    self._train()

    def _episode(
        self,
        state: torch.Tensor,
        actions: torch.Tensor,
        probs: list[torch.Tensor],
        rewards: np.ndarray,
        baseline: np.ndarray,
    ) -> Episode:
        """The buffer entry of told samples: sampling-time log pi, advantage ``R - b``, scale."""
        reward_t = torch.tensor(rewards, dtype=DTYPE)
        scale = (
            (1.0 / (reward_t + 1e-8)).abs()
            if self.hp.setting("reward_scaling")
            else torch.ones_like(reward_t)
        )
        chosen = [p.gather(-1, actions[..., l : l + 1])[..., 0] for l, p in enumerate(probs)]
        old_logp = torch.stack(chosen).log().sum(0)
        advantage = reward_t - torch.tensor(baseline, dtype=DTYPE)[:, None]
        return Episode(state, actions, probs, old_logp, advantage, scale)

    def _epoch_orders(self, size: int) -> np.ndarray:
        """Per run, the sample order of every possible epoch of one update ``(R, E, N)``.

        Drawn up front from each run's rng (whether or not the run stops early), so a run
        consumes the same draws alone and in a batch.
        """
        kind, epochs = self.hp.setting("minibatch"), self.hp.max_epochs
        if kind == "none":
            return np.tile(np.arange(size), (self.runs, epochs, 1))
        if kind == "bootstrap":
            return np.stack([rng.integers(0, size, (epochs, size)) for rng in self.rngs])
        base = np.tile(np.arange(size), (epochs, 1))
        return np.stack([rng.permuted(base, axis=1) for rng in self.rngs])

    def _train(self) -> None:
        """Up to ``max_epochs`` passes over the buffer; per-run early stop on the KL."""
        data = _concat(list(self.buffer))
        size = data.actions.shape[1]
        bs = self.hp.batch_size or size
        orders = self._epoch_orders(size)
        active = np.ones(self.runs, dtype=bool)
        for epoch in range(self.hp.max_epochs):
            kl_sum = np.zeros(self.runs)
            for t, lo in enumerate(range(0, size, bs), start=1):
                batch = _take(data, torch.from_numpy(orders[:, epoch, lo : lo + bs]))
                self._step(batch, active)
                if self.hp.kl_stop is not None:
                    kl_sum += self._kl(batch, active)
                    active &= ~(kl_sum / t > self.hp.kl_stop)
                if not active.any():
                    return

    def _train_compiled(self, threads: int) -> None:
        """:meth:`_train` as one compiled call (:mod:`~bionas_bench.controllers.pg_kernel`):
        same draws, same steps, same early stops; runs spread over ``threads`` threads.
        The parameters, Adam moments and step counts are updated in place. The buffer is
        handed over rounded to float32, the kernel's precision."""
        data = _concat(list(self.buffer))
        size = data.actions.shape[1]
        old = np.concatenate([p.numpy() for p in data.old_probs], axis=-1)  # (R, N, sum radix)
        # per sample: old log pi, advantage, scale, sum_l sum_k old log old (for the KL)
        neg_old = sum(
            (p * np.log(np.maximum(p, 1e-300))).sum(-1) for p in (q.numpy() for q in data.old_probs)
        )
        scal = np.stack([data.old_logp.numpy(), data.advantage.numpy(), data.scale.numpy(), neg_old], -1)
        single = pg_kernel.F
        hp = self.hp
        taken = np.zeros(self.runs, dtype=np.int64)
        pg_kernel.update_runs(
            threads,
            self.flat.numpy(),
            self.adam_m.numpy(),
            self.adam_v.numpy(),
            self.steps.numpy(),
            np.ascontiguousarray(data.state.numpy(), dtype=single),
            np.ascontiguousarray(data.actions.numpy()),
            old.astype(single),
            scal.astype(single),
            self._epoch_orders(size),
            self._radices,
            self._choice_offsets,
            self._param_offsets,
            hp.lstm_units,
            hp.embedding_dim,
            self.shape.feed == "probs",
            self.shape.gate == "hard_sigmoid",
            pg_kernel.ALGORITHMS[self.algorithm],
            hp.setting("entropy") == "sampled",
            float(hp.entropy_weight),
            float(hp.clip),
            float(hp.lr),
            float(hp.lr_decay),
            -1.0 if hp.kl_stop is None else float(hp.kl_stop),
            hp.batch_size,
            float(getattr(hp, "diversity_weight", 0.0)),
            float(getattr(hp, "slack", 0.0)),
            taken,
            cost=self.last_steps,
        )
        self.num_updates += taken
        self.last_steps = taken

    def _loss(self, weights: list[torch.Tensor], batch: Episode) -> torch.Tensor:
        """Per-run loss ``(R,)`` of one minibatch (Eq. 7 or Eq. 9, entropy, diversity)."""
        logps = self.net.evaluate(weights, batch.state, batch.actions)
        chosen = torch.stack(
            [lp.gather(-1, batch.actions[..., l : l + 1])[..., 0] for l, lp in enumerate(logps)]
        )
        logp = chosen.sum(0)
        adv = batch.advantage
        if self.algorithm == "ppo":
            ratio = torch.exp(logp - batch.old_logp)
            clipped = ratio.clamp(1 - self.hp.clip, 1 + self.hp.clip)
            surrogate = torch.minimum(ratio * adv, clipped * adv)
        else:
            surrogate = adv * logp
        loss = -(batch.scale * surrogate).mean(-1)
        if self.hp.setting("entropy") == "sampled":
            entropy = (-chosen).mean(-1).sum(0)
        else:
            entropy = sum((-(lp.exp() * lp).sum(-1)).mean(-1) for lp in logps)
        loss = loss - self.hp.entropy_weight * entropy
        if self.algorithm == "diverse":
            loss = loss + self.hp.diversity_weight * _similarity_hinge(
                [lp.exp() for lp in logps], self.hp.slack
            )
        return loss

    def _step(self, batch: Episode, active: np.ndarray) -> None:
        """One masked Adam step (Keras-style inverse-time decay) for the active runs.

        Only the active runs are computed: when some runs have stopped, their rows are
        gathered out, stepped and scattered back (the others stay untouched, as alone).
        """
        rows = None if active.all() else torch.from_numpy(np.flatnonzero(active))
        pick = (lambda x: x) if rows is None else (lambda x: x[rows])
        flat = pick(self.flat).to(DTYPE).requires_grad_(True)
        loss = self._loss(unflatten(self.shape, flat), _select(batch, rows)).sum()
        (grad,) = torch.autograd.grad(loss, flat)
        b1, b2 = ADAM_BETAS
        steps = pick(self.steps)
        t = steps + 1
        lr = (self.hp.lr / (1 + self.hp.lr_decay * steps) * torch.sqrt(1 - b2**t) / (1 - b1**t))[:, None]
        with torch.no_grad():
            m = b1 * pick(self.adam_m) + (1 - b1) * grad
            v = b2 * pick(self.adam_v) + (1 - b2) * grad * grad
            new = flat.detach() - lr * m / (v.sqrt() + ADAM_EPS)
            new, m, v = new.to(PARAM_DTYPE), m.to(PARAM_DTYPE), v.to(PARAM_DTYPE)
            if rows is None:
                self.flat, self.adam_m, self.adam_v = new, m, v
            else:
                self.flat[rows], self.adam_m[rows], self.adam_v[rows] = new, m, v
        self.steps += torch.from_numpy(active).to(DTYPE)
        self.num_updates += active

    def _kl(self, batch: Episode, active: np.ndarray) -> np.ndarray:
        """Mean over the minibatch of sum_l KL(p_old || p_new), per run ``(R,)`` (0 if inactive)."""
        rows = None if active.all() else torch.from_numpy(np.flatnonzero(active))
        flat = (self.flat if rows is None else self.flat[rows]).to(DTYPE)
        sub = _select(batch, rows)
        with torch.no_grad():
            logps = self.net.evaluate(unflatten(self.shape, flat), sub.state, sub.actions)
            kl = sum(
                (old * (old.clamp_min(1e-300).log() - new)).sum(-1)
                for old, new in zip(sub.old_probs, logps, strict=True)
            )
        out = np.zeros(self.runs)
        out[active] = kl.mean(-1).numpy()
        return out

    # ------------------------------------------------------------------ read-outs
    def policy(self) -> list[np.ndarray]:
        """Per-layer probabilities ``[(R, radix)]`` that the last :meth:`sample` drew from,
        averaged over its architectures (what the original plotted per episode, and what
        :meth:`recommend` smooths); before any sample, :meth:`probe`."""
        if self.sampled is None:
            return self.probe()
        return [p.copy() for p in self.sampled]

    def probe(self) -> list[np.ndarray]:
        """The network's per-layer probabilities ``[(R, radix)]`` at a uniform state
        (``"probs"`` feed) or along its greedy path (``"action"`` feed)."""
        with torch.no_grad(), single_thread():
            return [p.numpy().copy() for p in self.net.probe(self.weights)]

    def recommend(self) -> np.ndarray:
        """Per layer, argmax of the window-``sma_window`` moving average's last value."""
        if not self.history:
            smoothed = self.probe()
        else:
            window = self.history[-self.hp.sma_window :]
            smoothed = [np.mean([ep[l] for ep in window], axis=0) for l in range(self.shape.num_layers)]
        choices = np.stack([p.argmax(axis=-1) for p in smoothed], axis=-1)
        return np.asarray(self.space.encode(choices), dtype=np.int64).reshape(self.runs)


def _similarity_hinge(probs: list[torch.Tensor], slack: float) -> torch.Tensor:
    """``mean_{i<j} max(0, sim(i, j) - slack)`` per run, sim = mean_l <P_l^i, P_l^j>."""
    n = probs[0].shape[1]
    if n < 2:
        return torch.zeros(probs[0].shape[0], dtype=probs[0].dtype)
    gram = sum(torch.bmm(p, p.transpose(1, 2)) for p in probs) / len(probs)
    i, j = torch.triu_indices(n, n, offset=1)
    return torch.relu(gram[:, i, j] - slack).mean(-1)


_BLAS_CONTROLLER: list[Any] = []  # one threadpoolctl controller, made on first use


def _blas_controller() -> Any:
    """The process's ``threadpoolctl.ThreadpoolController`` (None without threadpoolctl)."""
    if not _BLAS_CONTROLLER:
        try:
            from threadpoolctl import ThreadpoolController
        except ImportError:  # pragma: no cover - a declared dependency
            _BLAS_CONTROLLER.append(None)
        else:
            _BLAS_CONTROLLER.append(ThreadpoolController())
    return _BLAS_CONTROLLER[0]


@contextlib.contextmanager
def single_thread() -> Iterator[None]:
    """Run torch and numpy's BLAS on one thread (restored after).

    The matrices are tiny, and on a shared machine thread hand-offs cost far more than
    they save: with OpenBLAS's default two threads on this loaded 2-core machine, one
    200 x 50 QR of the initialisation took ~150 ms instead of ~0.2 ms, and the batched
    matmuls of a training step ran 2-5x slower. Results are bit-identical either way.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    blas = _blas_controller()
    limit = blas.limit(limits=1, user_api="blas") if blas is not None else contextlib.nullcontext()
    try:
        with limit:
            yield
    finally:
        torch.set_num_threads(before)


def _select(batch: Episode, rows: torch.Tensor | None) -> Episode:
    """The runs ``rows`` of a minibatch (all of them when ``rows`` is None)."""
    if rows is None:
        return batch
    return Episode(
        batch.state[rows],
        batch.actions[rows],
        [p[rows] for p in batch.old_probs],
        batch.old_logp[rows],
        batch.advantage[rows],
        batch.scale[rows],
    )


def _concat(episodes: list[Episode]) -> Episode:
    cat = lambda xs: torch.cat(xs, dim=1)  # noqa: E731
    return Episode(
        cat([e.state for e in episodes]),
        cat([e.actions for e in episodes]),
        [cat([e.old_probs[l] for e in episodes]) for l in range(len(episodes[0].old_probs))],
        cat([e.old_logp for e in episodes]),
        cat([e.advantage for e in episodes]),
        cat([e.scale for e in episodes]),
    )


def _take(data: Episode, idx: torch.Tensor) -> Episode:
    """Rows ``idx (R, b)`` of every ``(R, N, ...)`` tensor of ``data``."""
    rows = torch.arange(idx.shape[0])[:, None]
    return Episode(
        data.state[rows, idx],
        data.actions[rows, idx],
        [p[rows, idx] for p in data.old_probs],
        data.old_logp[rows, idx],
        data.advantage[rows, idx],
        data.scale[rows, idx],
    )


# ---------------------------------------------------------------------- controllers
class PolicyGradientController(Controller):
    """Shared ask/tell of the policy-gradient controllers (one run = an engine with R = 1)."""

    algorithm: ClassVar[str] = "ppo"

    def __init__(self, space: ModelSpace | str, seed: int | np.random.Generator = 0, **hparams: Any):
        super().__init__(space, seed, **hparams)
        self.engine = Engine(self.space, [self.rng], self.params, self.algorithm)
        self._samples: list[tuple[int, torch.Tensor, torch.Tensor, list[torch.Tensor]]] = []

    @classmethod
    def batched(cls, space: ModelSpace | str, seeds: list[int], **hparams: Any) -> PolicyGradientRuns:
        """Runs for ``seeds`` advanced together; equal to ``cls(space, seed=s)`` run alone."""
        return PolicyGradientRuns(cls, space, seeds, make_params(cls, hparams))

    def _ask(self, n: int) -> np.ndarray:
        ids, state, actions, probs = self.engine.sample(n)
        for j in range(n):
            self._samples.append((int(ids[0, j]), state[0, j], actions[0, j], [p[0, j] for p in probs]))
        return ids[0]

    def _tell(self, ids: np.ndarray, rewards: np.ndarray, info: dict[str, Any]) -> None:
        picked = [self._samples.pop(self._find(int(i))) for i in ids]
        state = torch.stack([s[1] for s in picked])[None]
        actions = torch.stack([s[2] for s in picked])[None]
        probs = [torch.stack([s[3][l] for s in picked])[None] for l in range(self.space.num_layers)]
        self.engine.update(state, actions, probs, rewards[None])

    def _find(self, arch_id: int) -> int:
        return next(k for k, s in enumerate(self._samples) if s[0] == arch_id)

    def recommend(self) -> int:
        return int(self.engine.recommend()[0])

    def policy(self) -> list[np.ndarray]:
        return [p[0] for p in self.engine.policy()]


class PPOController(PolicyGradientController):
    """BioNAS's LSTM controller trained with PPO (Eq. 6-9), original hyper-parameters.

    An LSTM samples one choice per layer; each ``tell`` is one episode (tell a whole
    ``ask(n)`` at once). Advantage = reward - baseline, the baseline an exponential moving
    average of past episodes' mean rewards; clipped surrogate (Eq. 9) plus an entropy
    bonus, Adam with Keras inverse-time decay, up to ``max_epochs`` epochs over the buffer
    per update with an early stop on KL(old || new). ``recommend()``: per layer, the argmax
    of the final value of a moving average (``sma_window``) of the per-episode mean choice
    probabilities (the original rule). The update computes in float32, as the original
    Keras controller did (the compiled kernel, :mod:`pg_kernel`).

    Hyper-parameters
    ----------------
    variant : str = "original_code"
        "original_code" (what produced the paper's figures) or "paper" (the paper's text);
        sets ``feed``, ``reward_scaling``, ``entropy``, ``minibatch`` and ``warmup`` at
        once. Each of those five, when not None, overrides its variant's value.
    feed : str | None = None
        LSTM inputs. "probs" (original_code): a random state vector per episode, the next
        layer's input a dense map of the previous layer's probabilities. "action" (paper):
        a learned start vector, the next input the embedding of the sampled choice.
    gate : str = "sigmoid"
        The LSTM's input, forget and output gates: "sigmoid", or "hard_sigmoid",
        ``clip(0.2 z + 0.5, 0, 1)``, the Keras LSTM default before Keras 2.3 that the
        original most likely ran with (not a variant flag; see the README).
    reward_scaling : bool | None = None
        True (original_code): each sample's surrogate is multiplied by ``|1/R|``.
    entropy : str | None = None
        "sampled" (original_code): ``-mean log p`` of the buffered choices; "exact"
        (paper): the sum over layers of the policy's entropy.
    minibatch : str | None = None
        Order of the buffer's samples in an epoch: "bootstrap" (original_code: N draws with
        replacement), "shuffle" (paper: a permutation), "none" (each sample once, in order).
    warmup : str | None = None
        "pooled" (original_code): the first ``warmup_episodes`` episodes form one buffer
        entry whose baseline is their own mean reward; "episodes" (paper): each episode is
        an entry, the baseline lagged from the first episode.
    lstm_units : int = 50
        LSTM hidden units.
    embedding_dim : int = 8
        Width of the LSTM's input embedding.
    lr : float = 0.1
        Adam's initial learning rate.
    lr_decay : float = 0.999
        Inverse-time decay per optimiser step k: ``lr / (1 + lr_decay * k)``.
    entropy_weight : float = 0.001
        Weight of the entropy bonus.
    baseline_decay : float = 0.2
        Weight of the previous baseline in its moving average (0.8 on the new mean).
    clip : float = 0.2
        PPO clip range of the probability ratio.
    batch_size : int = 5
        Minibatch size of an update (0: the whole buffer at once).
    max_epochs : int = 100
        Most epochs over the buffer per update.
    kl_stop : float | None = 0.01
        Stop an update once the mean KL(old || new) of the epoch's minibatches exceeds
        this (checked after every step); None never stops early.
    buffer_episodes : int = 15
        Buffer entries kept (a pooled warm-up counts as one).
    warmup_episodes : int = 15
        No update before this many episodes were told.
    sma_window : int = 10
        Window of the moving average behind ``recommend()``.

    Reference: Z. Zhang, L. Zhou, L. Gou and Y. N. Wu, "Neural architecture search for
    joint optimization of predictive power and biological knowledge", arXiv:1909.00337
    (2019); PPO: J. Schulman et al., arXiv:1707.06347 (2017).
    """

    name = "ppo"
    Params = PPOParams
    algorithm = "ppo"


class ReinforceController(PolicyGradientController):
    """The BioNAS LSTM controller trained with the REINFORCE gradient (Eq. 7).

    The network, baseline, entropy bonus, optimiser and ``recommend()`` of ``ppo``; each
    episode is followed by one full-batch REINFORCE step on that episode's samples, each
    used once. Its hyper-parameters are ``ppo``'s (``bionas-bench controllers show ppo``),
    the ``variant`` flags included: by default (``"original_code"``) the gradient is Eq. 7
    with the original code's departures (``|1/R|`` scaling, sampled entropy, probability
    feed); ``variant="paper"`` is the plain Eq. 7. These defaults
    differ from ``ppo``'s:

    Hyper-parameters
    ----------------
    minibatch : str | None = "none"
        The episode's samples, each once ("shuffle" or "bootstrap" reorder or resample them).
    batch_size : int = 0
        The whole episode in one step.
    max_epochs : int = 1
        One step per episode.
    kl_stop : float | None = None
        No KL stop (one step).
    buffer_episodes : int = 1
        Only the last episode.
    warmup_episodes : int = 1
        Updates from the first episode on.

    Reference: R. J. Williams, "Simple statistical gradient-following algorithms for
    connectionist reinforcement learning", Machine Learning 8 (1992).
    """

    name = "reinforce"
    Params = ReinforceParams
    algorithm = "reinforce"


class DiversePGController(PolicyGradientController):
    """REINFORCE plus a hinge penalty on the similarity of architectures sampled together.

    ``reinforce`` (see ``bionas-bench controllers show reinforce``) whose loss adds
    ``diversity_weight * mean_{i<j} max(0, sim(i, j) - slack)`` over the pairs of an
    episode's samples, ``sim(i, j) = (1/L) sum_l <P_l^i, P_l^j>`` the mean inner product
    of their per-layer choice probabilities: the idea of deep exploration networks
    (diversity-driven exploration) carried to architecture search, so that the samples of
    one episode spread over the space.

    Hyper-parameters
    ----------------
    diversity_weight : float = 1.0
        Weight of the hinge penalty (0: plain ``reinforce``).
    slack : float = 0.5
        Similarity below which a pair is not penalised, in [0, 1].

    Reference: Z.-W. Hong, T.-Y. Shann, S.-Y. Su, Y.-H. Chang, T.-J. Fu and C.-Y. Lee,
    "Diversity-driven exploration strategy for deep reinforcement learning", NeurIPS 2018.
    """

    name = "diverse_pg"
    Params = DiverseParams
    algorithm = "diverse"


class PolicyGradientRuns(BatchedRuns):
    """Many runs of one policy-gradient controller advanced together (stacked parameters)."""

    def __init__(
        self, cls: type[PolicyGradientController], space: ModelSpace | str, seeds: list[int], params: Any
    ):
        self.name = cls.name
        rngs = [rng_from_seed(s, ControllerError, cls.name) for s in check_seeds(seeds, cls.name)]
        self.engine = Engine(resolve_space(space, cls.name), rngs, params, cls.algorithm)
        self._pending: tuple[np.ndarray, torch.Tensor, torch.Tensor, list[torch.Tensor]] | None = None

    def ask(self, n: int) -> np.ndarray:
        if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1:
            raise ControllerError(f"{self.name}.ask(n): n must be a positive integer, got {n!r}")
        if self._pending is not None:
            raise ControllerError(f"{self.name} (batched): tell() the last ask() before asking again")
        self._pending = self.engine.sample(int(n))
        return self._pending[0].copy()

    def tell(self, ids: np.ndarray, rewards: np.ndarray, info: Mapping[str, Any] | None = None) -> None:
        if self._pending is None:
            raise ControllerError(f"{self.name} (batched): tell() without a pending ask()")
        check_info(info, f"{self.name} (batched).tell")  # unused by the update, but a misuse all the same
        asked = self._pending[0]
        ids = np.asarray(ids)
        try:
            rewards = np.asarray(rewards, dtype=np.float64)
        except (TypeError, ValueError):
            raise ControllerError(
                f"{self.name} (batched).tell: rewards must be numbers, got {rewards!r}"
            ) from None
        if ids.shape != asked.shape or rewards.shape != asked.shape or not np.array_equal(ids, asked):
            raise ControllerError(
                f"{self.name} (batched): tell() needs exactly the {asked.shape} ids of the last ask() "
                f"and rewards of that shape, got ids {ids.shape} and rewards {rewards.shape}"
            )
        check_info_shapes(info or {}, ids.shape, f"{self.name} (batched).tell")
        if not np.all(np.isfinite(rewards)):
            raise ControllerError(f"{self.name} (batched): rewards must be finite")
        _, state, actions, probs = self._pending
        self._pending = None
        self.engine.update(state, actions, probs, rewards)

    def recommend(self) -> np.ndarray:
        return self.engine.recommend()

    def policy(self) -> list[np.ndarray]:
        return self.engine.policy()


def prepare_update() -> None:
    """Compile the update and the sampler of :mod:`pg_kernel` now, or load them from
    numba's on-disk cache.

    numba compiles them on their first use after installing (~18 s on a 2-core machine)
    and caches them next to the module; later processes load them (~0.5 s). Any first
    ask and update does this anyway; calling it first lets a caller say why it waits (the
    CLI does, before a sweep with a policy-gradient controller). One tiny PPO update on
    the paper's space, so that the arguments have the types of every real update and
    compile the same specialisation.
    """
    from bionas_bench.space import get_space

    controller = PPOController(get_space("bionas-conv1d"), seed=0, warmup_episodes=1, max_epochs=1)
    ids = controller.ask(3)
    controller.tell(ids, np.zeros(3))  # warmup_episodes=1: this tell updates


__all__ = [
    "DiverseParams",
    "DiversePGController",
    "PPOController",
    "PPOParams",
    "PolicyGradientRuns",
    "ReinforceController",
    "ReinforceParams",
    "prepare_update",
]
