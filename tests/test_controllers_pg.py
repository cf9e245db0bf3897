"""Tests of the policy-gradient controllers (ppo, reinforce, diverse_pg)."""

from __future__ import annotations

import os
import re
import threading
from collections import deque

import numpy as np
import pytest
import torch

import bionas_bench as bb
from bionas_bench import controllers
from bionas_bench.controllers.lstm_policy import DTYPE
from bionas_bench.controllers.policy_gradient import PolicyGradientController
from bionas_bench.errors import ControllerError

NAMES = ["ppo", "reinforce", "diverse_pg"]


@pytest.fixture(scope="module")
def space():
    return bb.get_space("bionas-conv1d")


def _table(seed: int = 5) -> np.ndarray:
    """A synthetic (216, 20) reward table: one good architecture, noisy replicates."""
    rng = np.random.default_rng(seed)
    loss = rng.uniform(0.2, 0.7, (216, 1)) + rng.normal(0, 0.02, (216, 20))
    loss[17] -= 0.3
    return -loss


def _drive(ctrl, episodes: int, table: np.ndarray, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    asked = []
    for _ in range(episodes):
        ids = ctrl.ask(3)
        asked.append(ids)
        ctrl.tell(ids, table[ids, rng.integers(0, 20, ids.shape)])
    return asked


@pytest.mark.parametrize("name", NAMES)
def test_registered_and_valid(space, name):
    ctrl = controllers.create(name, space, seed=1, warmup_episodes=2)
    assert isinstance(ctrl, PolicyGradientController)
    asked = _drive(ctrl, 6, _table())
    assert all(a.shape == (3,) and a.min() >= 0 and a.max() < 216 for a in asked)
    assert 0 <= ctrl.recommend() < 216
    probs = ctrl.policy()
    assert [p.shape for p in probs] == [(k,) for k in space.radices]
    assert all(np.isclose(p.sum(), 1) for p in probs)


@pytest.mark.parametrize("name", NAMES)
def test_deterministic_under_seed(space, name):
    a = _drive(controllers.create(name, space, seed=3, warmup_episodes=2), 8, _table())
    b = _drive(controllers.create(name, space, seed=3, warmup_episodes=2), 8, _table())
    c = _drive(controllers.create(name, space, seed=4, warmup_episodes=2), 8, _table())
    assert np.array_equal(np.stack(a), np.stack(b))
    assert not np.array_equal(np.stack(a), np.stack(c))


@pytest.mark.parametrize(
    ("name", "variant"), [("ppo", "original_code"), ("ppo", "paper"), ("diverse_pg", "paper")]
)
def test_batched_equals_unbatched(space, name, variant):
    """4 runs x 20 episodes: same ids, same recommend(), allclose probabilities."""
    seeds, episodes, table = [11, 12, 13, 14], 20, _table()
    hp = {"variant": variant, "warmup_episodes": 3}
    runs = controllers.create_runs(name, space, seeds, **hp)
    rng = np.random.default_rng(0)
    reps = [rng.integers(0, 20, (len(seeds), 3)) for _ in range(episodes)]
    batched_ids = []
    for e in range(episodes):
        ids = runs.ask(3)
        batched_ids.append(ids)
        runs.tell(ids, table[ids, reps[e]])
    for r, seed in enumerate(seeds):
        alone = controllers.create(name, space, seed=seed, **hp)
        for e in range(episodes):
            ids = alone.ask(3)
            assert np.array_equal(ids, batched_ids[e][r]), (r, e)
            alone.tell(ids, table[ids, reps[e][r]])
        assert alone.recommend() == runs.recommend()[r]
        for layer, p in enumerate(alone.policy()):
            np.testing.assert_allclose(p, runs.policy()[layer][r], rtol=0, atol=1e-10)


@pytest.mark.parametrize(
    ("name", "variant", "extra"),
    [
        ("ppo", "original_code", {}),
        ("ppo", "original_code", {"kl_stop": 0.3, "max_epochs": 2}),
        ("ppo", "original_code", {"gate": "hard_sigmoid"}),
        ("ppo", "paper", {"kl_stop": 0.3, "max_epochs": 2}),
        ("ppo", "paper", {"gate": "hard_sigmoid", "kl_stop": 0.3, "max_epochs": 2}),
        ("reinforce", "original_code", {}),
        ("diverse_pg", "paper", {}),
    ],
)
def test_compiled_update_equals_autograd_reference(space, name, variant, extra):
    """The compiled update (default) follows the torch-autograd reference.

    4 runs x 25 episodes with a short warm-up; with a loose KL stop the runs take many
    steps and stop at different times. Same ids, same step counts, parameters within
    1e-3: the kernel computes in float32 and the reference in float64, and Adam turns
    the rounding of near-zero gradients into steps of its own size (measured: at most
    1.4e-4 after 25 episodes). The gradient itself is checked tightly below.
    """
    seeds, episodes, table = [21, 22, 23, 24], 25, _table()
    out = {}
    for impl in ("autograd", "compiled"):
        runs = controllers.create_runs(name, space, seeds, variant=variant, warmup_episodes=3, **extra)
        runs.engine.impl = impl
        rng = np.random.default_rng(1)
        asked = []
        for _ in range(episodes):
            ids = runs.ask(3)
            asked.append(ids)
            runs.tell(ids, table[ids, rng.integers(0, 20, ids.shape)])
        out[impl] = (np.stack(asked), runs.engine.num_updates.copy(), runs.engine.flat.numpy().copy())
    ref, compiled = out["autograd"], out["compiled"]
    assert np.array_equal(ref[0], compiled[0])
    assert np.array_equal(ref[1], compiled[1])
    if "kl_stop" in extra:  # long updates that end at different steps per run
        assert ref[1].min() > episodes and len(set(ref[1].tolist())) > 1
    np.testing.assert_allclose(compiled[2], ref[2], rtol=0, atol=1e-3)


@pytest.mark.parametrize(
    ("name", "variant", "gate", "spread"),
    [
        ("ppo", "original_code", None, 0.0),
        ("ppo", "original_code", "hard_sigmoid", 0.0),
        ("ppo", "original_code", "hard_sigmoid", 2.0),
        ("ppo", "paper", None, 0.0),
        ("ppo", "paper", "hard_sigmoid", 2.0),
        ("reinforce", "original_code", None, 0.0),
        ("diverse_pg", "paper", None, 0.0),
    ],
)
def test_compiled_gradient_equals_autograd_reference(space, name, variant, gate, spread):
    """One optimiser step on the whole buffer: Adam's first moment is then (1 - beta1) times
    the gradient, so the kernel's float32 gradient must match the float64 autograd
    gradient of the same float32 parameters to float32 rounding (1e-5 of its largest entry).
    ``spread``: noise added to the initial parameters, which drives hard-sigmoid gates
    into their clipped, zero-slope range (checked below).
    """
    seeds, table = [31, 32], _table()
    first_moment = {}
    for impl in ("autograd", "compiled"):
        runs = controllers.create_runs(
            name, space, seeds, variant=variant, warmup_episodes=2, max_epochs=1, batch_size=0, kl_stop=None,
            **({} if gate is None else {"gate": gate}),
        )  # fmt: skip
        noise = np.random.default_rng(8).normal(0.0, spread, runs.engine.flat.shape)
        runs.engine.flat += torch.from_numpy(noise.astype(np.float32))
        if spread and runs.engine.shape.gate == "hard_sigmoid":
            assert _clipped_gate_share(runs.engine) > 0.05
        runs.engine.impl = impl
        _drive(runs, 2, table, seed=4)
        assert runs.engine.num_updates.tolist() == [1, 1]
        first_moment[impl] = runs.engine.adam_m.numpy().copy()
    ref = first_moment["autograd"]
    assert np.abs(ref).max() > 0
    np.testing.assert_allclose(first_moment["compiled"], ref, rtol=0, atol=1e-5 * np.abs(ref).max())


@pytest.mark.parametrize(
    ("name", "variant"), [("ppo", "original_code"), ("ppo", "paper"), ("diverse_pg", "paper")]
)
def test_compiled_gradient_with_repeated_samples(space, name, variant):
    """The kernel gives samples of equal inputs one forward and one backward pass between
    them (the same state with the "probs" feed, the same choices with the "action" feed)
    and runs the KL check's forward pass with the next minibatch's. A buffer holding one
    episode twice, one step on the whole buffer: Adam's first moment must still match the
    autograd reference, which computes every sample on its own."""
    seeds, table = [41, 42], _table()
    first_moment = {}
    for impl in ("autograd", "compiled"):
        runs = controllers.create_runs(
            name, space, seeds, variant=variant, warmup="episodes", warmup_episodes=2,
            max_epochs=1, batch_size=0, kl_stop=None,
        )  # fmt: skip
        engine = runs.engine
        engine.impl = impl
        _drive(runs, 1, table, seed=6)  # one buffered episode, no update yet
        engine.buffer = deque([engine.buffer[0]] * 2)  # (diverse_pg's buffer holds one episode)
        if impl == "autograd":
            engine._train()
        else:
            engine._train_compiled(1)
        assert engine.steps.tolist() == [1.0, 1.0]
        first_moment[impl] = engine.adam_m.numpy().copy()
    ref = first_moment["autograd"]
    assert np.abs(ref).max() > 0
    np.testing.assert_allclose(first_moment["compiled"], ref, rtol=0, atol=1e-5 * np.abs(ref).max())


def _clipped_gate_share(engine) -> float:
    """The share of first-step gate pre-activations outside the hard sigmoid's linear range."""
    weights = engine.weights
    start = torch.full((engine.runs, 1, engine.shape.state_dim), 1.0 / engine.shape.state_dim, dtype=DTYPE)
    x = engine.net.first_input(weights, start)
    h = torch.zeros(engine.runs, 1, engine.shape.units, dtype=DTYPE)
    z = torch.baddbmm(weights[1], torch.cat([x, h], dim=-1), weights[0])
    return float((z.abs() > 2.5).double().mean())


@pytest.mark.parametrize("gate", ["sigmoid", "hard_sigmoid"])
@pytest.mark.parametrize("variant", ["original_code", "paper"])
def test_compiled_sampling_equals_torch_rollout(space, variant, gate):
    """``ask`` samples with the compiled float64 rollout; ``impl = "autograd"`` with the
    torch one. From the same parameters (moved far from their initial, near-uniform
    policy) and the same rng: the same architectures, states and probabilities to 1e-12."""
    out = {}
    for impl in ("autograd", "compiled"):
        runs = controllers.create_runs("ppo", space, [51, 52, 53], variant=variant, gate=gate)
        noise = np.random.default_rng(7).normal(0.0, 0.5, runs.engine.flat.shape)
        runs.engine.flat += torch.from_numpy(noise.astype(np.float32))
        runs.engine.impl = impl
        out[impl] = runs.engine.sample(4)
    (ids_r, state_r, act_r, probs_r), (ids_c, state_c, act_c, probs_c) = out["autograd"], out["compiled"]
    assert np.array_equal(ids_r, ids_c) and torch.equal(act_r, act_c)
    np.testing.assert_allclose(state_c.numpy(), state_r.numpy(), rtol=0, atol=1e-12)
    assert max(float(p.max()) for p in probs_r) > 0.6  # far from uniform
    for p_r, p_c in zip(probs_r, probs_c, strict=True):
        assert p_c.shape == p_r.shape
        np.testing.assert_allclose(p_c.numpy(), p_r.numpy(), rtol=0, atol=1e-12)


@pytest.mark.parametrize(("variant", "quantile"), [("original_code", 0.7), ("paper", 0.6)])
def test_ppo_learns_synthetic_optimum(space, variant, quantile):
    """After 80 episodes the recommendations of 8 runs sit, in the median, well inside the
    better part of the table (a uniform guess sits at quantile 0.5; measured medians:
    0.79 original_code, 0.70 paper)."""
    table = _table().mean(axis=1)
    runs = controllers.create_runs("ppo", space, list(range(8)), variant=variant)
    _drive(runs, 80, _table())
    position = [(table < table[r]).mean() for r in runs.recommend()]
    assert np.median(position) >= quantile, position


@pytest.mark.parametrize("warmup", ["pooled", "episodes"])
def test_warmup_buffer_and_baselines(space, warmup):
    """The buffer and advantages of 32 episodes (warm-up 15, buffer 15), against the rules
    written out here. ``pooled`` (the original code: its training loop finishes a path only
    from episode 15 on, so episodes 1-15 become one 45-sample entry whose baseline is their
    own mean; entries are trimmed by count): updates on 45, 48, ..., 87 samples, then 45
    once the pooled entry drops out. ``episodes``: one entry per episode, the lagged
    moving-average baseline from episode 1 on; every update has 45 samples."""
    table = _table()
    ctrl = controllers.create("ppo", space, seed=3, warmup=warmup, max_epochs=2)
    rng = np.random.default_rng(0)
    rewards, entries = [], []  # expected buffer: (episode indices, baseline) per entry
    prev_b = prev_mean = None
    for e in range(1, 33):
        ids = ctrl.ask(3)
        r = table[ids, rng.integers(0, 20, 3)]
        ctrl.tell(ids, r)
        rewards.append(r)
        if warmup == "pooled" and e < 15:
            continue
        if warmup == "pooled" and e == 15:
            b = prev_mean = np.concatenate(rewards).mean()
            entries.append((list(range(15)), b))
        else:
            b = r.mean() if prev_b is None else 0.2 * prev_b + 0.8 * prev_mean
            prev_mean = r.mean()
            entries.append(([e - 1], b))
        prev_b = b
        entries = entries[-15:]
        buffer = ctrl.engine.buffer
        if e < 15:
            assert ctrl.engine.num_updates[0] == 0
            continue
        expected = np.concatenate([np.concatenate([rewards[i] for i in eps]) - b for eps, b in entries])
        got = np.concatenate([entry.advantage.numpy()[0] for entry in buffer])
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)
        sizes = {15: 45, 16: 48, 29: 87, 30: 45} if warmup == "pooled" else {15: 45, 16: 45, 29: 45}
        if e in sizes:
            assert got.size == sizes[e], e


@pytest.mark.parametrize("name", ["reinforce", "diverse_pg"])
def test_reinforce_steps_on_each_sample_of_the_episode_once(space, name):
    """One full-batch step per episode on that episode's samples, each once (Eq. 7): the
    default equals minibatch="none" and differs from a bootstrap resample of the episode."""
    runs = {mb: controllers.create(name, space, seed=2, minibatch=mb) for mb in ("none", "bootstrap")}
    runs[None] = controllers.create(name, space, seed=2)  # the default
    for ctrl in runs.values():
        _drive(ctrl, 6, _table())
    flat = {mb: ctrl.engine.flat.numpy() for mb, ctrl in runs.items()}
    np.testing.assert_array_equal(flat[None], flat["none"])
    assert not np.array_equal(flat[None], flat["bootstrap"])


def test_recommend_is_sma_argmax(space):
    ctrl = controllers.create("reinforce", space, seed=0, sma_window=3)
    _drive(ctrl, 5, _table())
    window = ctrl.engine.history[-3:]
    expected = [int(np.mean([ep[l][0] for ep in window], axis=0).argmax()) for l in range(4)]
    assert space.decode(ctrl.recommend()) == tuple(expected)


@pytest.mark.parametrize("variant", ["original_code", "paper"])
def test_policy_is_what_the_last_ask_sampled_from(space, variant):
    """policy(): before any ask the network's probe; after an ask, the mean probabilities
    its architectures were drawn from -- the episode's entry of the history that
    recommend() smooths (for the "probs" feed these differ from the probe: every
    architecture starts from its own random state)."""
    runs = controllers.create_runs("ppo", space, [5, 6], variant=variant, warmup_episodes=2)
    for before, probe in zip(runs.policy(), runs.engine.probe(), strict=True):
        np.testing.assert_array_equal(before, probe)
    table, rng = _table(), np.random.default_rng(0)
    for _ in range(4):
        ids = runs.ask(3)
        sampled = runs.policy()
        runs.tell(ids, table[ids, rng.integers(0, 20, ids.shape)])
        for layer, p in enumerate(sampled):
            np.testing.assert_array_equal(p, runs.engine.history[-1][layer])
            np.testing.assert_allclose(p.sum(axis=-1), 1.0, atol=1e-12)
    if variant == "original_code":
        assert max(np.abs(p - q).max() for p, q in zip(sampled, runs.engine.probe(), strict=True)) > 1e-6


def test_tell_subsets_and_interleaved_asks(space):
    ctrl = controllers.create("ppo", space, seed=0, warmup_episodes=1)
    a, b = ctrl.ask(2), ctrl.ask(1)
    ctrl.tell(b, [-0.5])
    ctrl.tell(a, [-0.4, -0.6])
    assert ctrl.engine.episodes == 2
    with pytest.raises(ControllerError):
        ctrl.tell(a, [-0.4, -0.6])


@pytest.mark.parametrize(
    ("name", "hparams"),
    [
        ("ppo", {"variant": "nope"}),
        ("ppo", {"lr": 0}),
        ("ppo", {"lr": float("nan")}),
        ("ppo", {"clip": -0.1}),
        ("ppo", {"batch_size": -1}),
        ("ppo", {"max_epochs": 0}),
        ("ppo", {"lstm_units": 2.5}),
        ("ppo", {"lstm_units": 10**9}),  # was a MemoryError traceback while drawing the first run
        ("ppo", {"embedding_dim": 4097}),
        ("ppo", {"kl_stop": 0}),
        ("ppo", {"feed": "sideways"}),
        ("ppo", {"gate": "relu"}),
        ("ppo", {"entropy": "maximal"}),
        ("ppo", {"baseline_decay": 1.5}),
        ("ppo", {"reward_scaling": "yes"}),
        ("ppo", {"bogus": 1}),
        ("diverse_pg", {"slack": 2.0}),
        ("diverse_pg", {"diversity_weight": -1.0}),
    ],
)
def test_bad_hparams(space, name, hparams):
    with pytest.raises(ControllerError, match="hyper-parameter"):
        controllers.create(name, space, seed=0, **hparams)
    with pytest.raises(ControllerError, match="hyper-parameter"):
        controllers.create_runs(name, space, [0, 1], **hparams)


def test_batched_misuse(space):
    runs = controllers.create_runs("ppo", space, [0, 1])
    with pytest.raises(ControllerError):
        runs.tell(np.zeros((2, 3), dtype=np.int64), np.zeros((2, 3)))
    ids = runs.ask(3)
    with pytest.raises(ControllerError):
        runs.ask(3)
    with pytest.raises(ControllerError):
        runs.tell(ids[:, :2], np.zeros((2, 2)))
    runs.tell(ids, -np.ones((2, 3)))
    assert runs.recommend().shape == (2,)


def test_ppo_reproduces_the_lambda_trend_on_the_original_table(space, bionas_pub_store_path):
    """The paper's trend (Fig. 2) on the imported original table, 20 runs x 100 episodes.

    At lambda = 0.001 the recommended architectures have a lower mean loss rank than
    knowledge rank, at lambda = 1000 the reverse. Measured (default ``ppo``; runs
    ``s..s+19``, oracle seed ``s``): s = 0: 22.4 < 30.4 and 30.8 > 10.0; s = 100: 26.0 <
    29.4 and 32.5 > 13.7; s = 200: 28.8 < 36.4 and 31.4 > 14.4. This test uses s = 100.
    Cost: the three settings together took 12 s on the shared 2-core machine.
    """
    from bionas_bench import BootstrapOracle
    from bionas_bench.store import Store

    store = Store.open(bionas_pub_store_path)
    means = {}
    for lam in (0.001, 1000.0):
        oracle = BootstrapOracle(store, lam=lam, seed=100)
        runs = controllers.create_runs("ppo", space, list(range(100, 120)))
        for _ in range(100):
            ids = runs.ask(3)
            runs.tell(ids, oracle.query(ids).reward)
        gold = oracle.gold_standard()
        rec = runs.recommend()
        means[lam] = (gold["loss_rank"].to_numpy()[rec].mean(), gold["knowledge_rank"].to_numpy()[rec].mean())
    assert means[0.001][0] < means[0.001][1], means
    assert means[1000.0][0] > means[1000.0][1], means


def test_threads_do_not_change_results(space):
    """Runs handed out to two or three threads (costliest first, by their steps in the
    previous update) give bit-identical parameters to one thread."""
    import torch

    before = torch.get_num_threads()
    flats = []
    try:
        for threads in (1, 2, 3):
            torch.set_num_threads(threads)
            runs = controllers.create_runs("ppo", space, [5, 6, 7], warmup_episodes=2, max_epochs=3)
            _drive(runs, 6, _table())
            flats.append(runs.engine.flat.numpy().copy())
    finally:
        torch.set_num_threads(before)
    assert np.array_equal(flats[0], flats[1]) and np.array_equal(flats[0], flats[2])


def _listed_hyper_parameters(out: str, name: str) -> str:
    """The hyper-parameter lines under ``name`` in ``controllers list`` output, joined."""
    lines = out.splitlines()
    row = next(i for i, line in enumerate(lines) if line.split()[:1] == [name])
    end = next((i for i in range(row + 1, len(lines)) if not lines[i].startswith(" ")), len(lines))
    return " ".join(line.strip() for line in lines[row + 1 : end])


def test_cli_says_what_variant_flags_left_at_none_stand_for(capsys, monkeypatch):
    """ppo's ``minibatch=None`` is the variant's "bootstrap", not the "none" order of reinforce;
    the hyper-parameters are wrapped to the terminal without splitting one of them."""
    from bionas_bench.cli import main

    monkeypatch.setenv("COLUMNS", "80")
    assert main(["controllers", "list"]) == 0
    out = capsys.readouterr().out
    params = [line for line in out.splitlines() if line.startswith(" ")]
    assert len(params) > 2 * len(bb.controllers.list())  # wrapped
    assert all(len(line) <= 80 and line.count("(") == line.count(")") for line in params), params
    ppo, reinforce = _listed_hyper_parameters(out, "ppo"), _listed_hyper_parameters(out, "reinforce")
    assert "minibatch=None (in effect 'bootstrap')," in ppo
    assert "feed=None (in effect 'probs')," in ppo
    assert "minibatch='none'," in reinforce
    assert "entropy=None (in effect 'sampled')," in reinforce
    assert "kl_stop=None," in reinforce  # a None that is not a variant flag stands for itself
    assert main(["controllers", "show", "ppo"]) == 0
    shown = capsys.readouterr().out
    assert re.search(r"\n  minibatch +None \(in effect 'bootstrap'\)  \(str \| None\)\n", shown)


def _spread_in_child(queue) -> None:
    from bionas_bench.controllers import pg_kernel

    done: list[int] = []
    pg_kernel._spread(2, list(range(6)), done.append)
    queue.put(sorted(done))


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_thread_pool_is_remade_in_a_forked_child():
    """The runs of a batch go to a thread pool kept per process. A forked child inherits
    the dict of pools but not their threads: it must make its own, not wait forever on
    the parent's (whose work would never run)."""
    import multiprocessing

    from bionas_bench.controllers import pg_kernel

    done: list[int] = []
    both = threading.Barrier(2, timeout=30)

    def meet(r: int) -> None:  # the first two runs wait for each other: two live threads
        if r < 2:
            both.wait()
        done.append(r)

    pg_kernel._spread(2, list(range(6)), meet)  # the parent's pool, both threads now idle
    assert sorted(done) == list(range(6))
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=_spread_in_child, args=(queue,))
    child.start()
    child.join(60)
    if child.exitcode is None:
        child.kill()
    assert child.exitcode == 0
    assert queue.get(timeout=5) == list(range(6))
