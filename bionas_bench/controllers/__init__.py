"""Search controllers behind one ask/tell protocol, and their registry.

    import bionas_bench as bb
    ctrl = bb.controllers.create("random", space, seed=0)   # space: a ModelSpace or its name
    bb.controllers.list()            # names of built-in and plugin controllers

Built-ins register themselves by name in ``BUILTIN``; third-party controllers register
through the entry-point group ``bionas_bench.controllers`` (the entry point names a
:class:`Controller` subclass). ``create_runs`` gives many independent runs advanced
together: the controller's own batched form when it has one, else a loop.
"""

from __future__ import annotations

import builtins
import importlib
from collections.abc import Sequence
from importlib.metadata import entry_points
from typing import Any

import numpy as np

from bionas_bench.controllers.base import BatchedRuns, Controller, LoopedRuns, check_seeds, resolve_space
from bionas_bench.errors import ControllerError
from bionas_bench.space import ModelSpace

ENTRY_POINT_GROUP = "bionas_bench.controllers"

#: built-in controllers: registry name -> "module:Class" (imported on first use)
BUILTIN: dict[str, str] = {
    "random": "bionas_bench.controllers.random_search:RandomSearch",
    "evolution": "bionas_bench.controllers.evolution:RegularizedEvolution",
    "local_search": "bionas_bench.controllers.local_search:LocalSearch",
    "successive_halving": "bionas_bench.controllers.multifidelity:SuccessiveHalving",
    "hyperband": "bionas_bench.controllers.multifidelity:Hyperband",
    "tpe": "bionas_bench.controllers.optuna_samplers:TPE",
    "gp": "bionas_bench.controllers.optuna_samplers:GaussianProcessBO",
    "bonas": "bionas_bench.controllers.bayesopt:BONAS",
    "ppo": "bionas_bench.controllers.policy_gradient:PPOController",
    "reinforce": "bionas_bench.controllers.policy_gradient:ReinforceController",
    "diverse_pg": "bionas_bench.controllers.policy_gradient:DiversePGController",
}


def _plugins() -> dict[str, Any]:
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def list() -> builtins.list[str]:  # noqa: A001 - the documented public name
    """Names of every available controller (built-in and plugins), sorted."""
    return sorted(set(BUILTIN) | set(_plugins()))


def get(name: str) -> type[Controller]:
    """The controller class registered under ``name``."""
    if name in BUILTIN:
        module, _, cls = BUILTIN[name].partition(":")
        return getattr(importlib.import_module(module), cls)
    plugins = _plugins()
    if name in plugins:
        try:
            cls = plugins[name].load()
        except Exception as exc:  # noqa: BLE001 - a third-party import may raise anything
            raise ControllerError(
                f"plugin controller {name!r} ({plugins[name].value}) cannot be imported "
                f"({type(exc).__name__}: {exc}); fix or uninstall the package that registers it "
                f"under the entry-point group {ENTRY_POINT_GROUP!r}"
            ) from None
        if not (isinstance(cls, type) and issubclass(cls, Controller)):
            raise ControllerError(
                f"plugin controller {name!r} ({plugins[name].value}) is not a Controller subclass"
            )
        return cls
    raise ControllerError(f"unknown controller {name!r}; available: {', '.join(list())}")


def create(
    name: str, space: ModelSpace | str, seed: int | np.random.Generator = 0, **hparams: Any
) -> Controller:
    """A new controller ``name`` over ``space`` with the given seed and hyper-parameters.

    ``space`` is a :class:`ModelSpace` or a space name such as ``"bionas-conv1d"``; the
    name is resolved here, so a controller class always receives a ``ModelSpace``.
    """
    return get(name)(resolve_space(space, name), seed=seed, **hparams)


def create_runs(
    name: str, space: ModelSpace | str, seeds: Sequence[int | np.random.Generator], **hparams: Any
) -> BatchedRuns:
    """Independent runs of controller ``name``, one per seed, advanced together.

    ``space`` as for :func:`create`; ``seeds`` a non-empty sequence, each seed what
    :func:`create` accepts. Both are checked before the controller's batched form (a
    plugin's included) or the looped fallback sees them.
    """
    cls = get(name)
    space, seeds = resolve_space(space, name), check_seeds(seeds, name)
    batched = getattr(cls, "batched", None)
    if batched is not None:
        return batched(space, seeds, **hparams)
    return LoopedRuns([cls(space, seed=s, **hparams) for s in seeds])


__all__ = [
    "BUILTIN",
    "ENTRY_POINT_GROUP",
    "BatchedRuns",
    "Controller",
    "LoopedRuns",
    "create",
    "create_runs",
    "get",
    "list",
]
