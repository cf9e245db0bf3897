"""Behaviour of the baseline controllers beyond the shared conformance suite."""

from __future__ import annotations

import logging
import math
import re

import numpy as np
import pytest

import bionas_bench as bb
from bionas_bench import controllers
from bionas_bench.controllers.bayesopt import ArchitectureEncoding, BayesianLinearRegression
from bionas_bench.controllers.conformance import tiny_space
from bionas_bench.controllers.multifidelity import rung_budgets
from bionas_bench.controllers.random_search import Observations, distinct_random_ids, mutate, neighbours
from bionas_bench.errors import ControllerError, SpaceError

pytestmark = pytest.mark.usefixtures("one_torch_thread")


SPACE = bb.get_space("bionas-conv1d")
TARGET = np.array([2, 1, 3, 0])  # architecture 93


def objective(ids: np.ndarray, rng: np.random.Generator | None = None, noise: float = 0.0) -> np.ndarray:
    """A smooth synthetic reward on bionas-conv1d with its optimum at architecture 93."""
    digits = np.asarray(SPACE.decode(np.asarray(ids))).reshape(len(ids), -1)
    reward = -((digits - TARGET) ** 2).sum(axis=1).astype(float)
    return reward if rng is None else reward + noise * rng.standard_normal(len(ids))


def drive(ctrl: bb.controllers.Controller, budget: int, batch: int = 3, noise: float = 0.0) -> None:
    rng = np.random.default_rng(0)
    for _ in range(budget // batch):
        ids = ctrl.ask(batch)
        info = {"cost": np.ones(batch)}
        if ctrl.uses_fidelity:
            info["epoch"] = ctrl.fidelity()
        ctrl.tell(ids, objective(ids, rng, noise), info)


# ---------------------------------------------------------------------- helpers
def test_observations_recommend_the_best_mean_not_the_luckiest_draw() -> None:
    obs = Observations()
    obs.add(np.array([4, 4, 4, 7]), np.array([3.0, -1.0, 1.0, 2.0]))
    assert obs.mean(4) == 1.0 and obs.count(4) == 3
    assert obs.best() == 7
    obs.add(np.array([7, 9]), np.array([-2.0, 0.0]))  # 7's mean drops to 0; 9 ties it with 1 draw
    assert obs.best() == 4
    assert obs.ranked() == [4, 7, 9]  # tie at mean 0: more observations first
    assert Observations().best(default=5) == 5


def test_neighbours_and_mutation_change_exactly_one_layer() -> None:
    rng = np.random.default_rng(0)
    digits = np.asarray(SPACE.decode(46))
    nbrs = neighbours(SPACE, 46)
    assert len(nbrs) == sum(r - 1 for r in SPACE.radices) == len(set(nbrs.tolist()))
    assert all((np.asarray(SPACE.decode(int(a))) != digits).sum() == 1 for a in nbrs)
    for _ in range(50):
        child = mutate(SPACE, 46, rng)
        assert (np.asarray(SPACE.decode(child)) != digits).sum() == 1
    ids = distinct_random_ids(SPACE, rng, 500)
    assert len(ids) == SPACE.size == len(set(ids.tolist()))


# ---------------------------------------------------------------------- random search
def test_random_search_covers_the_space_before_repeating() -> None:
    ctrl = bb.controllers.create("random", SPACE, seed=1)
    first = np.concatenate([ctrl.ask(100), ctrl.ask(116)])
    assert sorted(first.tolist()) == list(range(SPACE.size))
    again = ctrl.ask(SPACE.size + 1)  # crosses into a third permutation
    assert sorted(again[:-1].tolist()) == list(range(SPACE.size))
    independent = bb.controllers.create("random", SPACE, seed=1, unique=False).ask(SPACE.size)
    assert len(set(independent.tolist())) < SPACE.size


def test_random_search_recommends_by_mean_reward_under_noise() -> None:
    ctrl = bb.controllers.create("random", tiny_space(), seed=0, unique=False)
    assert ctrl.recommend() == 0
    ids = ctrl.ask(4)
    assert ctrl.recommend() == ids[0]  # before any result: the first asked id
    ctrl.tell(ids, [5.0, 1.0, 1.0, 1.0] if len(set(ids.tolist())) == 4 else [1.0] * 4)
    best = ctrl.recommend()
    assert best in ids.tolist()


# ---------------------------------------------------------------------- evolution
def test_evolution_ages_out_the_oldest_and_mutates_tournament_winners() -> None:
    ctrl = bb.controllers.create("evolution", SPACE, seed=3, population_size=6, sample_size=3)
    initial = ctrl.ask(6)
    ctrl.tell(initial, objective(initial))
    assert [a for a, _ in ctrl.population] == initial.tolist()
    members = set(initial.tolist())
    child = int(ctrl.ask(1)[0])
    assert min((np.asarray(SPACE.decode(child)) != np.asarray(SPACE.decode(m))).sum() for m in members) == 1
    ctrl.tell([child], objective(np.array([child])))
    assert len(ctrl.population) == 6
    assert [a for a, _ in ctrl.population] == [*initial.tolist()[1:], child]  # oldest left


def test_evolution_finds_the_optimum_of_a_smooth_objective() -> None:
    ctrl = bb.controllers.create("evolution", SPACE, seed=0)
    drive(ctrl, 150, batch=1)
    assert ctrl.recommend() == 93


def test_evolution_rejects_a_tournament_larger_than_the_population() -> None:
    with pytest.raises(ControllerError, match=r"sample_size \(30\) must not exceed population_size \(20\)"):
        bb.controllers.create("evolution", SPACE, sample_size=30)


# ---------------------------------------------------------------------- local search
def test_local_search_climbs_one_layer_neighbourhoods_to_the_optimum() -> None:
    ctrl = bb.controllers.create("local_search", SPACE, seed=2, num_init=3)
    start = ctrl.ask(3)
    ctrl.tell(start, objective(start))
    current = max(start.tolist(), key=lambda a: (objective(np.array([a]))[0], -a))
    nbrs = ctrl.ask(len(neighbours(SPACE, current)))
    assert ctrl.current == current
    assert set(nbrs.tolist()) == set(neighbours(SPACE, current).tolist())
    ctrl.tell(nbrs, objective(nbrs))
    drive(ctrl, 60, batch=1)
    assert ctrl.recommend() == 93
    assert 93 in ctrl.local_optima or ctrl.current == 93


def test_local_search_first_improvement_moves_as_soon_as_a_neighbour_wins() -> None:
    ctrl = bb.controllers.create("local_search", SPACE, seed=2, num_init=1, first_improvement=True)
    start = ctrl.ask(1)
    ctrl.tell(start, [0.0])
    nbr = ctrl.ask(1)
    ctrl.tell(nbr, [1.0])
    assert ctrl.current == int(nbr[0])
    assert int(ctrl.ask(1)[0]) in set(neighbours(SPACE, int(nbr[0])).tolist())


def test_local_search_restarts_at_a_local_optimum_and_fills_large_asks() -> None:
    space = tiny_space()
    ctrl = bb.controllers.create("local_search", space, seed=0, num_init=1)
    ids = ctrl.ask(40)  # 1 start id, then random fillers while it waits
    assert ids.shape == (40,)
    ctrl.tell(ids, np.where(ids == ids[0], 10.0, -1.0))  # the start wins, so its
    nbrs = ctrl.ask(1)  # neighbours are all observed already: it is a local optimum
    assert ctrl.local_optima == [int(ids[0])]
    assert nbrs.shape == (1,)


# ---------------------------------------------------------------------- multi-fidelity
def test_rung_budgets_are_geometric() -> None:
    assert rung_budgets(3, 81, 3) == [3, 9, 27, 81]
    assert rung_budgets(1, 100, 3) == [1, 4, 11, 33, 100]
    assert rung_budgets(5, 5, 2) == [5]


def test_successive_halving_keeps_the_best_third_and_triples_the_epochs() -> None:
    ctrl = bb.controllers.create("successive_halving", SPACE, seed=0)
    sizes: list[int] = []
    epochs: list[set[int]] = []
    kept: list[int] = []
    for _ in range(4):
        rung = ctrl.brackets[0] if ctrl.brackets else None
        n = 27 if rung is None else len(rung.queue)
        ids = ctrl.ask(n)
        sizes.append(n)
        epochs.append(set(ctrl.fidelity().tolist()))
        rewards = objective(ids)
        if kept:
            assert set(ids.tolist()) == set(kept)
        kept = [a for _, a in sorted(zip(-rewards, ids.tolist(), strict=True))][: max(1, n // 3)]
        ctrl.tell(ids, rewards, {"epoch": ctrl.fidelity(), "cost": ctrl.fidelity() * 2.0})
    assert sizes == [27, 9, 3, 1]
    assert epochs == [{3}, {9}, {27}, {81}]
    assert ctrl.brackets == []  # finished
    assert ctrl.recommend() == ids[0] and set(ctrl.by_epochs) == {3, 9, 27, 81}
    assert ctrl.total_cost == 2.0 * (27 * 3 + 9 * 9 + 3 * 27 + 81)


def test_hyperband_cycles_through_its_brackets() -> None:
    ctrl = bb.controllers.create("hyperband", SPACE, seed=0)
    shapes = [ctrl._bracket_shape(i) for i in range(5)]
    assert shapes == [(27, 4), (12, 3), (6, 2), (4, 1), (27, 4)]
    ids = ctrl.ask(27 + 12 + 6 + 4)  # nothing told: each exhausted bracket opens the next
    fid = ctrl.fidelity()
    assert fid.tolist() == [3] * 27 + [9] * 12 + [27] * 6 + [81] * 4
    ctrl.tell(ids[-4:], objective(ids[-4:]), {"epoch": fid[-4:]})
    best_full = max(ids[-4:].tolist(), key=lambda a: (objective(np.array([a]))[0], -a))
    assert ctrl.recommend() == best_full  # the highest fidelity decides


def test_multifidelity_finds_the_optimum_and_validates_params() -> None:
    ctrl = bb.controllers.create("hyperband", SPACE, seed=1, min_epochs=1, max_epochs=9)
    drive(ctrl, 300, batch=5)
    assert ctrl.recommend() == 93
    with pytest.raises(ControllerError, match=r"min_epochs \(10\) must not exceed max_epochs \(5\)"):
        bb.controllers.create("successive_halving", SPACE, min_epochs=10, max_epochs=5)
    with pytest.raises(ControllerError, match="eta must be at least 2"):
        bb.controllers.create("hyperband", SPACE, eta=1)


def test_multifidelity_routes_repeated_ids_by_the_served_epoch() -> None:
    ctrl = bb.controllers.create("successive_halving", tiny_space(), seed=0, num_configs=24)
    ids = ctrl.ask(24 + 24)  # a second bracket asks the same 24 architectures again
    fid = ctrl.fidelity()
    assert math.isclose(fid[:24].mean(), fid[24:].mean())
    ctrl.tell(ids[24:], np.zeros(24), {"epoch": fid[24:]})
    assert ctrl.brackets[1].rung == 0 and ctrl.brackets[0].rung == 1


# ---------------------------------------------------------------------- Optuna
class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_tpe_is_seeded_finds_the_optimum_and_keeps_optuna_quiet() -> None:
    import optuna  # noqa: F401 - configures the optuna logger before we look at it

    logger = logging.getLogger("optuna")
    before, handler = logger.level, _Records()
    logger.addHandler(handler)
    try:
        runs = []
        for _ in range(2):
            ctrl = bb.controllers.create("tpe", SPACE, seed=4)
            drive(ctrl, 60, batch=2)
            runs.append(ctrl.ask(5).tolist())
    finally:
        logger.removeHandler(handler)
    assert runs[0] == runs[1]
    assert ctrl.recommend() == 93
    assert [r.getMessage() for r in handler.records if r.levelno >= logging.INFO] == []
    assert logger.level == before


def test_gp_fits_after_the_startup_trials() -> None:
    ctrl = bb.controllers.create("gp", tiny_space(), seed=0, n_startup_trials=4)
    for _ in range(7):  # 3 asks through the fitted GP
        ids = ctrl.ask(1)
        ctrl.tell(ids, -np.abs(np.asarray(tiny_space().decode(ids)) - 1).sum(axis=1))
    assert len(ctrl.study.trials) == 7
    assert ctrl.study.best_value == ctrl.observations.mean(ctrl.recommend())


# ---------------------------------------------------------------------- BONAS-style BO
def test_bayesian_linear_regression_recovers_an_additive_function() -> None:
    encoding = ArchitectureEncoding(SPACE, pairwise=False)
    assert encoding.num_features == 1 + sum(SPACE.radices)
    assert ArchitectureEncoding(SPACE, pairwise=True).num_features == 1 + 16 + 18 + 12 + 12
    ids = np.arange(SPACE.size)
    y = objective(ids, np.random.default_rng(0), noise=0.1)
    y = (y - y.mean()) / y.std()
    train = np.random.default_rng(1).permutation(SPACE.size)[:108]
    blr = BayesianLinearRegression(encoding.dense(train), y[train])
    mean, std = blr.predict(encoding.active(ids))
    assert np.corrcoef(mean, y)[0, 1] > 0.98
    assert np.all(std > 0) and std.max() < 0.2
    assert 1.0 / blr.beta == pytest.approx(0.1**2 / objective(ids).std() ** 2, rel=0.5)


def test_bonas_asks_the_best_ucb_candidates_it_has_not_seen() -> None:
    ctrl = bb.controllers.create("bonas", SPACE, seed=0, n_init=20)
    first = ctrl.ask(20)
    ctrl.tell(first, objective(first))
    batch = ctrl.ask(5)
    assert len(set(batch.tolist())) == 5 and not set(batch.tolist()) & set(first.tolist())
    drive(ctrl, 30, batch=3)
    assert ctrl.recommend() == 93


def test_bonas_scores_a_pool_on_a_large_space() -> None:
    space = bb.get_space("bionas-eclip")
    ctrl = bb.controllers.create("bonas", space, seed=0, n_init=5, max_candidates=2000)
    ids = ctrl.ask(5)
    ctrl.tell(ids, np.arange(5.0))
    assert ctrl._candidates().size > 2000  # pool + neighbours of the best + observed
    assert ctrl.ask(3).shape == (3,)


# ---------------------------------------------------------------------- bad input
def test_unknown_controller_lists_the_available_ones() -> None:
    with pytest.raises(ControllerError, match="unknown controller 'nosuch'; available: .*random"):
        bb.controllers.create("nosuch", SPACE)


@pytest.mark.parametrize(
    ("name", "hparams", "message"),
    [
        ("random", {"uniqe": True}, "unknown hyper-parameter.*uniqe; known: unique"),
        ("random", {"unique": "yes"}, "hyper-parameter 'unique' must be bool, got 'yes'"),
        ("ppo", {"lr": "fast"}, "hyper-parameter 'lr' must be float, got 'fast'"),
        ("ppo", {"kl_stop": "none"}, "hyper-parameter 'kl_stop' must be float or None, got 'none'"),
        ("evolution", {"population_size": 0}, "population_size must be a positive integer"),
        ("local_search", {"num_init": 2.5}, "hyper-parameter 'num_init' must be int, got 2.5"),
        ("hyperband", {"max_epochs": -1}, "max_epochs must be a positive integer"),
        ("tpe", {"n_startup_trials": 0}, "n_startup_trials must be a positive integer"),
        ("bonas", {"kappa": float("nan")}, "kappa must be a finite number"),
    ],
)
def test_bad_hyper_parameters_raise_clear_errors(name: str, hparams: dict, message: str) -> None:
    with pytest.raises(ControllerError, match=f"controller '{name}'.*{message}"):
        bb.controllers.create(name, SPACE, **hparams)


@pytest.mark.parametrize("name", ["random", "ppo"])
@pytest.mark.parametrize("seed", [-1, 1.5, "a", True, None])
def test_bad_seed_is_a_controller_error(name: str, seed: object) -> None:
    with pytest.raises(
        ControllerError, match=rf"{name}: seed must be an integer >= 0 or a numpy Generator, got"
    ):
        bb.controllers.create(name, SPACE, seed=seed)
    with pytest.raises(ControllerError, match=rf"{name}: seed must be an integer >= 0"):
        bb.controllers.create_runs(name, SPACE, [0, seed])


def test_tell_misuse_is_a_controller_error() -> None:
    ctrl = bb.controllers.create("evolution", SPACE, seed=0)
    ids = ctrl.ask(2)
    with pytest.raises(ControllerError, match="were not returned by ask"):
        ctrl.tell([int(ids[0]) + 1 if ids[0] + 1 not in ids else int(ids[0]) + 2], [0.0])
    with pytest.raises(ControllerError, match="equal length"):
        ctrl.tell(ids, [0.0])
    with pytest.raises(ControllerError, match="finite"):
        ctrl.tell(ids, [0.0, float("nan")])


@pytest.mark.parametrize("name", sorted(controllers.BUILTIN))
def test_every_builtin_documents_its_hyper_parameters(name):
    """`bionas-bench controllers show NAME` prints the docstring: every hyper-parameter is
    described there, or (a variant of another controller) there by reference."""
    import dataclasses
    import inspect

    cls = controllers.get(name)
    doc = inspect.getdoc(cls) or ""
    fields = [f.name for f in dataclasses.fields(cls.Params)] if dataclasses.is_dataclass(cls.Params) else []
    if not fields:
        return
    assert "Hyper-parameters\n----------------" in doc, name
    section = doc.split("Hyper-parameters\n----------------", 1)[1]
    referenced = [other for other in controllers.BUILTIN if f"controllers show {other}" in doc]
    inherited = set()
    for other in referenced:
        other_cls = controllers.get(other)
        inherited |= {f.name for f in dataclasses.fields(other_cls.Params)}
    missing = [f for f in fields if f"\n{f} :" not in "\n" + section and f not in inherited]
    assert not missing, f"{name}: undocumented hyper-parameters {missing}"


# ---------------------------------------------------------------------- API misuse: clear errors
_SPACE_ERROR = r"space must be a ModelSpace or a space name such as 'bionas-conv1d', got "


@pytest.mark.parametrize("name", ["evolution", "ppo"])
@pytest.mark.parametrize("space", [None, 42, ["bionas-conv1d"]])
def test_a_space_that_is_neither_a_model_space_nor_a_name_is_a_controller_error(name, space) -> None:
    """create, create_runs and direct construction all name the space argument and the fix."""
    message = f"{name}: {_SPACE_ERROR}{re.escape(repr(space))}"
    with pytest.raises(ControllerError, match=message):
        bb.controllers.create(name, space)
    with pytest.raises(ControllerError, match=message):
        bb.controllers.create_runs(name, space, [0, 1])
    with pytest.raises(ControllerError, match=message):
        bb.controllers.get(name)(space)


@pytest.mark.parametrize("name", ["evolution", "tpe", "bonas", "ppo"])
def test_a_space_name_is_resolved_to_its_model_space(name) -> None:
    hparams = {"lstm_units": 8, "embedding_dim": 4} if name == "ppo" else {}
    for ctrl in (
        bb.controllers.create(name, "bionas-conv1d", **hparams),
        bb.controllers.get(name)("bionas-conv1d", **hparams),
    ):
        assert ctrl.space is SPACE
        ids = ctrl.ask(3)
        ctrl.tell(ids, objective(ids))
    runs = bb.controllers.create_runs(name, "bionas-conv1d", [0, 1], **hparams)
    assert runs.ask(3).shape == (2, 3)
    with pytest.raises(SpaceError, match="unknown space manifest 'no-such-space'"):
        bb.controllers.create(name, "no-such-space")


@pytest.mark.parametrize("name", ["evolution", "ppo"])
@pytest.mark.parametrize("info", ["cost", [("cost", 1.0)], 3.0])
def test_info_that_is_not_a_mapping_is_a_controller_error(name, info) -> None:
    """tell(ids, rewards, "cost") (info given positionally by mistake) names info; nothing is told."""
    message = rf"info must be a mapping such as \{{'cost': costs\}} or None, got {re.escape(repr(info))}"
    ctrl = bb.controllers.create(name, SPACE)
    ids = ctrl.ask(3)
    with pytest.raises(ControllerError, match=f"{name}.tell: {message}"):
        ctrl.tell(ids, objective(ids), info)
    ctrl.tell(ids, objective(ids), {"cost": np.ones(3)})
    runs = bb.controllers.create_runs(name, SPACE, [0, 1])
    ids = runs.ask(3)
    rewards = objective(ids.ravel()).reshape(ids.shape)
    with pytest.raises(ControllerError, match=f"{name} .*{message}"):
        runs.tell(ids, rewards, info)
    runs.tell(ids, rewards, {"cost": np.ones(ids.shape)})


@pytest.mark.parametrize("name", ["evolution", "ppo"])
def test_batched_tell_misuse_is_a_controller_error_and_tells_nothing(name) -> None:
    """Runs told the wrong shapes or non-numeric rewards: a ControllerError before any run
    is told (the looped form checks the whole call before telling run 0)."""
    runs = bb.controllers.create_runs(name, SPACE, [0, 1])
    ids = runs.ask(3)
    rewards = objective(ids.ravel()).reshape(ids.shape)
    bad_calls = [
        (ids[0], rewards[0], None),
        (ids, rewards[:, :2], None),
        (ids, [["high"] * 3] * 2, None),
        (ids, rewards, {"cost": np.ones(3)}),
    ]
    for bad in bad_calls:
        with pytest.raises(ControllerError, match=name):
            runs.tell(*bad)
    runs.tell(ids, rewards, {"cost": 1.0})  # a scalar info value stands for every id
    assert runs.ask(3).shape == (2, 3)


@pytest.mark.parametrize("name", ["random", "ppo"])
@pytest.mark.parametrize("seeds", [3, [], "01", None, np.int64(2)])
def test_seeds_that_are_not_a_non_empty_sequence_are_a_controller_error(name, seeds) -> None:
    with pytest.raises(ControllerError, match=rf"{name}: seeds must be a non-empty sequence of seeds"):
        bb.controllers.create_runs(name, SPACE, seeds)


@pytest.mark.parametrize("name", ["random", "ppo"])
@pytest.mark.parametrize("seeds", [range(2), np.arange(2), (0, np.random.default_rng(1))])
def test_seeds_take_any_sequence_of_what_create_accepts(name, seeds) -> None:
    assert bb.controllers.create_runs(name, SPACE, seeds).ask(1).shape == (2, 1)
