"""The conformance suite every controller -- built-in or plugin -- must pass.

It drives a controller through ask/tell against a tiny deterministic synthetic reward
function (no store, no oracle; a run takes milliseconds) and checks the protocol:

========================  ==================================================================
check                     what it asserts
========================  ==================================================================
``params``                ``Params`` is a frozen dataclass whose defaults construct; unknown
                          hyper-parameter names and a space that is neither a ModelSpace nor
                          a space name raise :class:`ControllerError` naming them
``ask``                   ``ask(n)`` returns ``n`` valid int64 ids for n = 1, 3 and an n
                          larger than the space (so larger than any internal batch), from
                          an ``_ask`` that returns integers (fractional ids are refused, not
                          truncated); a bad ``n`` raises :class:`ControllerError`
``trajectory``            a full ask/tell run with mixed batch sizes, results told in
                          shuffled order, split over several ``tell`` calls, with and
                          without ``info``; every id valid; ``num_told`` counts every
                          result (a ``tell`` override that bypasses the base class fails)
``determinism``           the same seed gives the same ids, recommendations, policies and
                          fidelities; a different seed gives a different run (stochastic
                          controllers)
``recommend``             ``recommend()`` is a valid id after 0 tells, after asks without
                          tells, after 1 tell and after many; calling it changes nothing
``tell_misuse``           no ids, ids never asked, ids told twice, mismatched lengths, 2-D input,
                          fractional ids, non-finite or non-numeric rewards and an ``info``
                          that is not a mapping raise :class:`ControllerError` and leave the
                          controller unchanged (compared with a twin of the same seed, so
                          randomness not drawn from ``self.rng`` fails here too)
``policy``                ``policy()``, when provided, is one probability vector per layer
``fidelity``              ``fidelity()`` is one positive integer epoch count per asked id for
                          ``uses_fidelity`` controllers, and None otherwise
``no_store``              the controller runs with the store, oracle and sweep modules
                          unimportable and every entry point into them blocked (the
                          package's names, cached or not; functions, classes, methods and
                          properties of loaded modules), whatever ran before in the process;
                          any use fails, even one the controller catches; its module holds
                          no reference to them
``batched``               a controller's ``batched`` form equals running each seed alone
========================  ==================================================================

Plugin authors call it from their own tests::

    import pytest
    from bionas_bench.controllers.conformance import CHECKS, check_controller
    from my_package import MyController

    @pytest.mark.parametrize("check", sorted(CHECKS))
    def test_conformance(check):
        check_controller(MyController, checks=[check])

A failure raises :class:`ConformanceError` (an ``AssertionError``) naming the controller,
the check and what went wrong.
"""

from __future__ import annotations

import builtins
import dataclasses
import functools
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from types import FunctionType, ModuleType
from typing import Any

import numpy as np

from bionas_bench.controllers.base import Controller, LoopedRuns
from bionas_bench.errors import ControllerError
from bionas_bench.space import Choice, Layer, ModelSpace

#: modules a controller must never need (it sees only the space and the rewards)
FORBIDDEN_MODULES = ("bionas_bench.store", "bionas_bench.oracle", "bionas_bench.sweep")
#: batch sizes the trajectory cycles through
BATCH_SIZES = (1, 3, 2, 5)
#: why two controllers made with the same seed, driven alike, can ask differently
_SAME_SEED_DIFFERS = (
    "two controllers made with the same seed asked different ids (this check drives such a pair "
    "and compares them); draw all randomness from self.rng, never np.random or random"
)
#: what no_store enforces, for its failure messages
_NO_STORE_RULE = (
    "a controller sees only the space and the rewards it is told, never the store, oracle or sweep"
)
#: class attributes no_store blocks (besides __init__)
_METHOD_TYPES = (FunctionType, classmethod, staticmethod, property, functools.cached_property)
#: marks an attribute that was absent before no_store set it
_MISSING = object()


class ConformanceError(AssertionError):
    """A controller violates the ask/tell protocol."""


# ---------------------------------------------------------------------- fixtures
def tiny_space() -> ModelSpace:
    """A 24-architecture space of three layers with 3, 2 and 4 choices."""

    def layer(name: str, radix: int) -> Layer:
        return Layer(name, tuple(Choice(f"{name}_{i}", "identity") for i in range(radix)))

    return ModelSpace(
        name="conformance-tiny",
        description="three layers (3, 2, 4 choices) for the controller conformance suite",
        layers=(layer("a", 3), layer("b", 2), layer("c", 4)),
        manifest_sha256="",
        manifest_text="",
    )


class SyntheticRewards:
    """A tiny deterministic objective with noise and a fidelity effect.

    reward = -(L1 distance of the choice digits to a target) + 0.1 * noise - 1 / epochs,
    with the noise drawn from a generator seeded at construction, so two runs that make
    the same queries in the same order see the same rewards. ``info`` carries ``cost``
    (the epochs trained) and, for fidelity queries, ``epoch``.
    """

    def __init__(self, space: ModelSpace, seed: int = 0):
        self.space = space
        self.target = np.array([r // 2 for r in space.radices], dtype=np.int64)
        self.rng = np.random.default_rng(seed)

    def __call__(self, ids: np.ndarray, epochs: np.ndarray | None = None) -> tuple[np.ndarray, dict]:
        digits = np.asarray(self.space.decode(np.asarray(ids, dtype=np.int64))).reshape(len(ids), -1)
        reward = -np.abs(digits - self.target).sum(axis=1) + 0.1 * self.rng.standard_normal(len(ids))
        if epochs is None:
            return reward, {"cost": np.full(len(ids), 10.0)}
        epochs = np.asarray(epochs, dtype=np.float64)
        return reward - 1.0 / epochs, {"cost": epochs.copy(), "epoch": epochs.astype(np.int64)}


@dataclasses.dataclass
class Subject:
    """The controller under test and how to make it."""

    cls: type[Controller]
    label: str
    space: ModelSpace
    hparams: dict[str, Any]
    budget: int
    stochastic: bool

    def make(self, seed: int = 0) -> Controller:
        return self.cls(self.space, seed=seed, **self.hparams)

    def fail(self, check: str, message: str) -> ConformanceError:
        return ConformanceError(f"controller {self.label!r} failed conformance check {check!r}: {message}")


@dataclasses.dataclass
class Trace:
    """Everything observable of one run, for comparisons."""

    ids: list[list[int]] = dataclasses.field(default_factory=list)
    recommendations: list[int] = dataclasses.field(default_factory=list)
    policies: list[list[list[float]] | None] = dataclasses.field(default_factory=list)
    fidelities: list[list[int] | None] = dataclasses.field(default_factory=list)


def run_trajectory(
    subject: Subject, ctrl: Controller, *, seed: int = 0, observe: bool = True, check: str = "trajectory"
) -> Trace:
    """Drive ``ctrl`` for ``subject.budget`` evaluations in the suite's standard pattern.

    Batch sizes cycle through :data:`BATCH_SIZES`; every second batch is told in a
    shuffled order over two ``tell`` calls, and every third without ``info``. With
    ``observe`` the trace records ``recommend()``, ``policy()`` and ``fidelity()``.
    """
    rewards = SyntheticRewards(subject.space, seed=seed)
    order_rng = np.random.default_rng(seed + 1)
    trace, told, step = Trace(), 0, 0
    while told < subject.budget:
        n = BATCH_SIZES[step % len(BATCH_SIZES)]
        ids = ctrl.ask(n)
        _check_ids(subject, check, ids, n)
        fidelity = _checked_fidelity(subject, check, ctrl, n)
        values, info = rewards(ids, fidelity if ctrl.uses_fidelity else None)
        trace.ids.append(ids.tolist())
        if observe:
            trace.fidelities.append(None if fidelity is None else np.asarray(fidelity).tolist())
        _tell_in_pattern(ctrl, ids, values, info, step, order_rng)
        if observe:
            trace.recommendations.append(_valid_recommendation(subject, check, ctrl))
            policy = ctrl.policy()
            trace.policies.append(None if policy is None else [np.asarray(p).tolist() for p in policy])
        told += n
        step += 1
    return trace


def _tell_in_pattern(
    ctrl: Controller,
    ids: np.ndarray,
    values: np.ndarray,
    info: dict[str, np.ndarray],
    step: int,
    order_rng: np.random.Generator,
) -> None:
    if step % 3 == 2:
        info = {}
    if step % 2 == 1 and len(ids) > 1:
        perm = order_rng.permutation(len(ids))
        for part in np.array_split(perm, 2):
            ctrl.tell(ids[part], values[part], {k: v[part] for k, v in info.items()})
    else:
        ctrl.tell(ids, values, info or None)


def _check_ids(subject: Subject, check: str, ids: Any, n: int) -> None:
    if not isinstance(ids, np.ndarray) or ids.dtype != np.int64 or ids.shape != (n,):
        raise subject.fail(check, f"ask({n}) must return an int64 array of shape ({n},), got {ids!r}")
    if ids.min() < 0 or ids.max() >= subject.space.size:
        raise subject.fail(check, f"ask({n}) returned ids outside 0..{subject.space.size - 1}: {ids}")


def _checked_fidelity(subject: Subject, check: str, ctrl: Controller, n: int) -> np.ndarray | None:
    """``fidelity()`` after an ask of ``n``: n positive integer epochs, or None."""
    fidelity = ctrl.fidelity()
    if not ctrl.uses_fidelity:
        if fidelity is not None:
            raise subject.fail(check, "fidelity() must be None when uses_fidelity is False")
        return None
    arr = None if fidelity is None else np.asarray(fidelity)
    if arr is None or arr.shape != (n,) or arr.dtype.kind not in "iu" or np.any(arr < 1):
        raise subject.fail(
            check, f"after ask({n}) fidelity() must be {n} positive integer epochs, got {fidelity!r}"
        )
    return arr


def _valid_recommendation(subject: Subject, check: str, ctrl: Controller) -> int:
    rec = ctrl.recommend()
    if isinstance(rec, bool) or not isinstance(rec, int | np.integer):
        raise subject.fail(check, f"recommend() must return an integer id, got {rec!r}")
    if not 0 <= int(rec) < subject.space.size:
        raise subject.fail(check, f"recommend() returned {rec}, outside 0..{subject.space.size - 1}")
    return int(rec)


# ---------------------------------------------------------------------- checks
def check_params(subject: Subject) -> None:
    cls = subject.cls
    if not (isinstance(cls.name, str) and cls.name):
        raise subject.fail("params", "the class attribute `name` must be a non-empty string")
    if not dataclasses.is_dataclass(cls.Params):
        raise subject.fail("params", "`Params` must be a dataclass")
    defaults = cls.Params()
    fields = dataclasses.fields(cls.Params)
    if fields:
        try:
            setattr(defaults, fields[0].name, getattr(defaults, fields[0].name))
        except dataclasses.FrozenInstanceError:
            pass
        else:
            raise subject.fail("params", "`Params` must be frozen (@dataclass(frozen=True))")
    try:
        cls(subject.space, seed=0, no_such_hyper_parameter=1)
    except ControllerError as exc:
        if "no_such_hyper_parameter" not in str(exc):
            raise subject.fail("params", f"the error for an unknown name must name it, got: {exc}") from None
    else:
        raise subject.fail("params", "an unknown hyper-parameter name was accepted")
    _check_bad_space(subject)


def _check_bad_space(subject: Subject) -> None:
    """A space that is not one must fail in the base class's check, before the subclass uses it."""
    try:
        subject.cls(None, seed=0, **subject.hparams)  # type: ignore[arg-type]
    except ControllerError as exc:
        if "space" not in str(exc):
            raise subject.fail("params", f"the error for space=None must name it, got: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - report any other type as the failure
        raise subject.fail(
            "params",
            f"space=None raised {type(exc).__name__}: {exc} (call super().__init__ before using the space)",
        ) from None
    else:
        raise subject.fail("params", "space=None was accepted")


def check_ask(subject: Subject) -> None:
    ctrl = subject.make()
    large = max(64, subject.space.size + 1) if subject.space.size < 1024 else 64
    for n in (1, 3, large, 1):
        try:
            ids = ctrl.ask(n)
        except ControllerError as exc:
            raise subject.fail("ask", f"ask({n}) raised ControllerError: {exc}") from None
        _check_ids(subject, "ask", ids, n)
    for bad in (0, -1, 2.5, True, "3"):
        try:
            ctrl.ask(bad)  # type: ignore[arg-type]
        except ControllerError:
            continue
        raise subject.fail("ask", f"ask({bad!r}) did not raise ControllerError")


def check_trajectory(subject: Subject) -> None:
    ctrl = subject.make()
    run_trajectory(subject, ctrl)
    _check_ids(subject, "trajectory", ctrl.ask(1), 1)
    told = _budget_told(subject.budget)
    if ctrl.num_told != told:
        raise subject.fail(
            "trajectory", f"num_told is {ctrl.num_told} after telling {told} results: {_miscount(ctrl)}"
        )


def _miscount(ctrl: Controller) -> str:
    """The likely cause of a ``num_told`` that does not match what was told."""
    cls = type(ctrl)
    if cls.tell is not Controller.tell:
        return (
            f"{cls.__name__}.tell() overrides Controller.tell and skips its validation and counting; "
            "implement _tell instead (or call super().tell)"
        )
    return "only the base Controller.tell may change num_told"


def _budget_told(budget: int) -> int:
    told, step = 0, 0
    while told < budget:
        told += BATCH_SIZES[step % len(BATCH_SIZES)]
        step += 1
    return told


def check_determinism(subject: Subject) -> None:
    first = run_trajectory(subject, subject.make(seed=7), check="determinism")
    again = run_trajectory(subject, subject.make(seed=7), check="determinism")
    for field in ("ids", "recommendations", "policies", "fidelities"):
        if not _same(getattr(first, field), getattr(again, field)):
            raise subject.fail("determinism", f"two runs with seed 7 differ in their {field}")
    if subject.stochastic:
        other = run_trajectory(subject, subject.make(seed=8), check="determinism")
        if other.ids == first.ids:
            raise subject.fail(
                "determinism",
                "seeds 7 and 8 gave the same ids (pass stochastic=False for a deterministic controller)",
            )


def _same(a: Any, b: Any) -> bool:
    """Exact equality of nested lists, treating NaN as equal to NaN."""
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (np.isnan(a) and np.isnan(b))
    return a == b


def check_recommend(subject: Subject) -> None:
    ctrl = subject.make()
    _valid_recommendation(subject, "recommend", ctrl)
    ids = ctrl.ask(2)
    _valid_recommendation(subject, "recommend", ctrl)
    rewards = SyntheticRewards(subject.space)
    values, info = rewards(ids[:1], _fidelity(ctrl, 1))
    ctrl.tell(ids[:1], values, info)
    _valid_recommendation(subject, "recommend", ctrl)
    run_trajectory(subject, ctrl, check="recommend")
    _valid_recommendation(subject, "recommend", ctrl)
    # recommend() must not change state: a run calling it after every tell asks the same ids
    quiet = run_trajectory(subject, subject.make(seed=3), observe=False, check="recommend")
    watched = run_trajectory(subject, subject.make(seed=3), observe=True, check="recommend")
    if quiet.ids != watched.ids:
        raise _differing_pair(
            subject, "recommend", "calling recommend()/policy()/fidelity() changed later asks"
        )


def _fidelity(ctrl: Controller, n: int) -> np.ndarray | None:
    """The fidelity of the first ``n`` ids of the last ask, for fidelity controllers."""
    if not ctrl.uses_fidelity:
        return None
    return np.asarray(ctrl.fidelity())[:n]


def check_tell_misuse(subject: Subject) -> None:
    ctrl = subject.make()
    reference = subject.make()
    ids = ctrl.ask(3)
    if not np.array_equal(reference.ask(3), ids):
        raise subject.fail("tell_misuse", _SAME_SEED_DIFFERS)
    unasked = next(a for a in range(subject.space.size) if a not in set(ids.tolist()))
    once = [a for a in ids.tolist() if ids.tolist().count(a) == 1]
    bad_calls: list[tuple[str, Any, Any, Any]] = [
        ("no ids", [], [], None),
        ("an id never asked", [unasked], [0.0], None),
        ("more rewards than ids", ids[:2], [0.0, 0.0, 0.0], None),
        ("fewer rewards than ids", ids, [0.0], None),
        ("a NaN reward", ids[:1], [float("nan")], None),
        ("an infinite reward", ids[:1], [float("inf")], None),
        ("2-D ids", ids[:2].reshape(1, 2), [[0.0, 0.0]], None),
        ("fractional ids", ids[:1] + 0.5, [0.0], None),
        ("non-numeric rewards", ids[:1], ["high"], None),
        ("an info that is not a mapping", ids[:1], [0.0], "cost"),
    ]
    if once:
        bad_calls.append(("an id asked once but told twice", [once[0], once[0]], [0.0, 0.0], None))
    for what, bad_ids, bad_rewards, bad_info in bad_calls:
        _expect_controller_error(subject, ctrl, what, bad_ids, bad_rewards, bad_info)
    values, info = SyntheticRewards(subject.space)(ids, _fidelity(ctrl, 3))
    ctrl.tell(ids, values, info)
    reference.tell(ids, values, info)
    _expect_controller_error(subject, ctrl, "an id already told", ids[:1], [0.0])
    if (
        run_trajectory(subject, ctrl, check="tell_misuse").ids
        != run_trajectory(subject, reference, check="tell_misuse").ids
    ):
        raise _differing_pair(
            subject, "tell_misuse", "rejected tell() calls changed the controller's later asks"
        )


def _differing_pair(subject: Subject, check: str, message: str) -> ConformanceError:
    """The failure for two same-seed runs that differ: ``message``, or nondeterminism when two
    plain runs with one seed differ too (then ``message`` would blame the wrong thing)."""
    first = run_trajectory(subject, subject.make(seed=5), observe=False, check=check)
    again = run_trajectory(subject, subject.make(seed=5), observe=False, check=check)
    return subject.fail(check, message if first.ids == again.ids else _SAME_SEED_DIFFERS)


def _expect_controller_error(
    subject: Subject, ctrl: Controller, what: str, ids: Any, rewards: Any, info: Any = None
) -> None:
    try:
        ctrl.tell(ids, rewards, info)
    except ControllerError:
        return
    except Exception as exc:  # noqa: BLE001 - report any other type as the failure
        raise subject.fail("tell_misuse", f"tell() with {what} raised {type(exc).__name__}: {exc}") from None
    raise subject.fail("tell_misuse", f"tell() with {what} did not raise ControllerError")


def check_policy(subject: Subject) -> None:
    ctrl = subject.make()
    _check_policy(subject, ctrl)
    rewards = SyntheticRewards(subject.space)
    for _ in range(3):
        ids = ctrl.ask(3)
        values, info = rewards(ids, _fidelity(ctrl, 3))
        ctrl.tell(ids, values, info)
        _check_policy(subject, ctrl)


def _check_policy(subject: Subject, ctrl: Controller) -> None:
    policy = ctrl.policy()
    if policy is None:
        return
    radices = subject.space.radices
    if not isinstance(policy, list) or len(policy) != len(radices):
        raise subject.fail("policy", f"policy() must be a list of {len(radices)} arrays, got {policy!r}")
    for layer, (probs, radix) in enumerate(zip(policy, radices, strict=True)):
        probs = np.asarray(probs, dtype=np.float64)
        if probs.shape != (radix,) or not np.all(np.isfinite(probs)) or np.any(probs < 0):
            raise subject.fail("policy", f"layer {layer}: expected {radix} finite probabilities, got {probs}")
        if not np.isclose(probs.sum(), 1.0, atol=1e-6):
            raise subject.fail("policy", f"layer {layer}: probabilities sum to {probs.sum()}, not 1")


def check_fidelity(subject: Subject) -> None:
    ctrl = subject.make()
    rewards = SyntheticRewards(subject.space)
    for n in (1, 4, 2, 7):
        ids = ctrl.ask(n)
        fidelity = _checked_fidelity(subject, "fidelity", ctrl, n)
        if n % 2 == 0:  # tell some batches, keep others pending
            ctrl.tell(ids, *rewards(ids, fidelity))


def check_no_store(subject: Subject) -> None:
    """Run the controller with every store, oracle and sweep entry point blocked.

    Blocking the entry points themselves (not only the imports) keeps the check sound
    whatever ran before in the process: an earlier check may have loaded these modules
    and cached ``bionas_bench.open_store`` in the package. Every use is recorded, so a
    controller that swallows the error still fails.
    """
    _check_module_references(subject)
    used: list[str] = []
    try:
        # blocking comes first: it must find the loaded modules before imports are cut off
        with _blocked_entry_points(used), _forbidden_imports():
            ctrl = subject.make()
            run_trajectory(subject, ctrl, check="no_store")
            ctrl.recommend()
    except ModuleNotFoundError as exc:
        if used or exc.name not in FORBIDDEN_MODULES:
            raise
        raise subject.fail("no_store", f"it imported {exc.name}; {_NO_STORE_RULE}") from None
    except Exception:
        if not used:
            raise
    if used:
        raise subject.fail("no_store", f"it used {', '.join(dict.fromkeys(used))}; {_NO_STORE_RULE}")


def _check_module_references(subject: Subject) -> None:
    """The controller's module holds nothing from the forbidden modules."""
    module = sys.modules.get(subject.cls.__module__)
    namespace = vars(module) if module is not None else {}
    for name, value in namespace.items():
        origin = value.__name__ if isinstance(value, ModuleType) else getattr(value, "__module__", "")
        if isinstance(origin, str) and origin.startswith(FORBIDDEN_MODULES):
            raise subject.fail("no_store", f"module {subject.cls.__module__} holds {name!r} from {origin}")


@contextmanager
def _forbidden_imports() -> Iterator[None]:
    """Make the store, oracle and sweep modules unimportable for the enclosed block."""
    saved = {name: sys.modules.get(name) for name in FORBIDDEN_MODULES}
    try:
        for name in FORBIDDEN_MODULES:
            sys.modules[name] = None  # type: ignore[assignment]  # import raises ImportError
        yield
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module


class _Blocked:
    """Stands in for a store, oracle or sweep entry point: using it is recorded and raises.

    Calling it, reading an attribute of it (``bb.store.open_store``) and, as a class
    attribute, looking it up (``Store.open``, ``store.metric``, ``Store(...)``'s
    ``__init__``) all count as a use of ``what``.
    """

    def __init__(self, what: str, used: list[str]):
        self._what, self._used = what, used

    def _refuse(self, what: str) -> ConformanceError:
        self._used.append(what)
        return ConformanceError(f"the conformance check no_store blocks {what}")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise self._refuse(self._what)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):  # introspection (copy, inspect.unwrap) is not a use
            raise AttributeError(name)
        raise self._refuse(f"{self._what}.{name}")

    def __get__(self, instance: Any, owner: Any = None) -> Any:
        raise self._refuse(self._what)


@contextmanager
def _blocked_entry_points(used: list[str]) -> Iterator[None]:
    """Replace every way into the store, oracle and sweep by :class:`_Blocked` for the block.

    The package's names for them (cached or not), the public functions of those modules
    that are loaded, and the methods, properties and constructors of their classes (so a
    class, function or store kept from before is blocked too). All are restored after.
    """
    saved = []
    try:
        for owner, name, what in _entry_points():
            value = vars(owner).get(name, _MISSING)
            setattr(owner, name, _Blocked(what, used))
            saved.append((owner, name, value))
        yield
    finally:
        for owner, name, value in reversed(saved):
            if value is _MISSING:
                delattr(owner, name)
            else:
                setattr(owner, name, value)


def _entry_points() -> list[tuple[Any, str, str]]:
    """``(owner, attribute name, what it is called)`` for each entry point to block."""
    points = _package_entry_points()
    classes: dict[type, None] = {}
    for module in [sys.modules[name] for name in FORBIDDEN_MODULES if sys.modules.get(name) is not None]:
        for name, value in _public_names(module):
            if isinstance(value, type):
                classes[value] = None
            elif callable(value):
                points.append((module, name, f"{module.__name__}.{name}"))
    for cls in classes:
        points += _class_entry_points(cls)
    return points


def _package_entry_points() -> list[tuple[Any, str, str]]:
    """The package's submodule attributes and lazily loaded names (its ``_LAZY`` table) that
    lead to a forbidden module, whether or not an earlier use cached them."""
    import bionas_bench

    named = {module.rsplit(".", 1)[1]: module for module in FORBIDDEN_MODULES} | bionas_bench._LAZY
    return [
        (bionas_bench, name, f"bionas_bench.{name}")
        for name, module in named.items()
        if module in FORBIDDEN_MODULES
    ]


def _public_names(module: ModuleType) -> list[tuple[str, Any]]:
    """The public names of ``module`` whose values come from a forbidden module."""
    return [
        (name, value)
        for name, value in vars(module).items()
        if not name.startswith("_") and str(getattr(value, "__module__", "")).startswith(FORBIDDEN_MODULES)
    ]


def _class_entry_points(cls: type) -> list[tuple[Any, str, str]]:
    """A class's constructor and every method and property it defines."""
    where = f"{cls.__module__}.{cls.__qualname__}"
    methods = [name for name, value in vars(cls).items() if isinstance(value, _METHOD_TYPES)]
    return [(cls, "__init__", where)] + [
        (cls, name, f"{where}.{name}") for name in methods if not name.startswith("__")
    ]


def check_batched(subject: Subject) -> None:
    batched = getattr(subject.cls, "batched", None)
    if batched is None:
        return
    seeds = [11, 12, 13]
    together = batched(subject.space, seeds, **subject.hparams)
    alone = LoopedRuns([subject.make(seed=s) for s in seeds])
    rewards = [SyntheticRewards(subject.space, seed=s) for s in seeds]
    told = 0
    while told < subject.budget:
        ids = together.ask(3)
        if not np.array_equal(ids, alone.ask(3)):
            raise subject.fail("batched", f"batched ids differ from one-by-one runs after {told} results")
        fidelity = together.fidelity()
        per_run = [rewards[r](ids[r], None if fidelity is None else fidelity[r]) for r in range(len(seeds))]
        values = np.stack([v for v, _ in per_run])
        info = {k: np.stack([i[k] for _, i in per_run]) for k in per_run[0][1]}
        together.tell(ids, values, info)
        alone.tell(ids, values, info)
        told += 3
    if not np.array_equal(together.recommend(), alone.recommend()):
        raise subject.fail("batched", "batched recommend() differs from one-by-one runs")


#: every check by name, in the order they run
CHECKS: dict[str, Callable[[Subject], None]] = {
    "params": check_params,
    "ask": check_ask,
    "trajectory": check_trajectory,
    "determinism": check_determinism,
    "recommend": check_recommend,
    "tell_misuse": check_tell_misuse,
    "policy": check_policy,
    "fidelity": check_fidelity,
    "no_store": check_no_store,
    "batched": check_batched,
}


# ---------------------------------------------------------------------- entry points
def check_controller(
    controller: str | type[Controller],
    space: ModelSpace | None = None,
    *,
    hparams: Mapping[str, Any] | None = None,
    checks: Iterable[str] | None = None,
    budget: int = 30,
    stochastic: bool = True,
) -> list[str]:
    """Run the conformance checks on a controller class or registered name.

    Parameters
    ----------
    controller:
        A :class:`Controller` subclass, or a name known to
        :func:`bionas_bench.controllers.get` (built-in or plugin).
    space:
        The space to search; default :func:`tiny_space` (24 architectures).
    hparams:
        Hyper-parameters for every controller the suite creates (e.g. a smaller budget
        for a slow controller).
    checks:
        Names from :data:`CHECKS` to run; default all.
    budget:
        Results told per trajectory.
    stochastic:
        Whether different seeds must give different runs; pass False for a controller
        that is deterministic whatever its seed.

    Returns the names of the checks run; raises :class:`ConformanceError` on the first
    failure.
    """
    subject = _subject(controller, space, hparams, budget, stochastic)
    names = builtins.list(CHECKS) if checks is None else builtins.list(checks)
    unknown = sorted(set(names) - set(CHECKS))
    if unknown:
        raise ControllerError(f"unknown conformance check(s) {unknown}; known: {', '.join(CHECKS)}")
    for name in names:
        try:
            CHECKS[name](subject)
        except ConformanceError:
            raise
        except Exception as exc:  # noqa: BLE001 - any crash is a failure of this check
            raise subject.fail(name, f"raised {type(exc).__name__}: {exc}") from exc
    return names


def _subject(
    controller: str | type[Controller],
    space: ModelSpace | None,
    hparams: Mapping[str, Any] | None,
    budget: int,
    stochastic: bool,
) -> Subject:
    if isinstance(controller, str):
        from bionas_bench.controllers import get

        cls = get(controller)
        label = controller
    elif isinstance(controller, type) and issubclass(controller, Controller):
        cls, label = controller, controller.name or controller.__name__
    else:
        raise ControllerError(
            f"check_controller needs a Controller subclass or a registered name, got {controller!r}"
        )
    return Subject(
        cls=cls,
        label=label,
        space=space or tiny_space(),
        hparams=dict(hparams or {}),
        budget=budget,
        stochastic=stochastic,
    )


def conformance_cases(controllers: Iterable[str | type[Controller]]) -> builtins.list[Any]:
    """``pytest.param(controller, check)`` for every pair, with readable ids.

    Use as ``@pytest.mark.parametrize(("controller", "check"), conformance_cases([...]))``
    and call ``check_controller(controller, checks=[check])`` in the test.
    """
    import pytest

    cases = []
    for controller in controllers:
        label = controller if isinstance(controller, str) else controller.name or controller.__name__
        cases += [pytest.param(controller, check, id=f"{label}-{check}") for check in CHECKS]
    return cases
