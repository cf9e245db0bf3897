"""The results store: every replicate of every architecture in one Zarr v3 group.

A store is the benchmark's table. The training farm writes it unit by unit (one unit =
one architecture x some replicates), the importers convert published tables into it,
and the oracle reads it. Layout (schema version 1)::

    <store>/                       root group; attributes below
      metrics/<name>   float64 [arch, replicate]      val_loss, test_loss, auroc, aupr,
                                                      accuracy, train_seconds, epochs, n_params
      knowledge/<set>  float64 [arch, replicate]      knowledge dissimilarity per motif set
      curves/<name>    float32 [arch, replicate, epoch]   NaN after early stop
      filters          float32 [arch, replicate, filter, width, 4]   NaN-padded (optional)
      failed           bool    [arch, replicate]      training did not learn / errored
      done             bool    [arch, replicate]      written LAST for each unit
      packed/...       whole-array copies of the [arch, replicate] arrays (see pack())

Every array is chunked by architecture (first-axis chunk 1), so workers that train
*different architectures* write disjoint chunks and never need a lock. Replicates of the
same architecture share a chunk: write them from one worker (one ``write_unit`` call or
consecutive calls), never from two at once.

Root attributes: ``schema_version``, ``space`` {name, manifest_text, manifest_sha256},
``dataset`` {name, manifest_text, manifest_sha256, data_sha256} (may be partial for
imports), ``training`` {name, manifest_text, manifest_sha256} or null, ``knowledge``
{settings, motif_sets: {set: [{name, pwm}]}, optional default_set}, ``replicate_seeds``,
``provenance`` {source, package_version, torch_version, device, created, notes, ...}
and the array name lists ``metrics``, ``knowledge_sets``, ``curves``.

Completion semantics: a unit counts only once its ``done`` cell is True, and ``done`` is
written after every other array of the unit, so an interrupted worker leaves a unit that
is simply not done (its partial values stay invisible to the oracle). ``Store.create``
writes straight to the final path: a freshly created store, whose done mask is all
False, is a valid *empty* store. Nothing is imputed: missing or failed replicates stay
visible through ``done``/``failed`` and NaN.

Opening is fast: the small [arch, replicate] arrays are read eagerly (from the
``packed/`` copies when they are current, see :meth:`Store.pack`); curves and filters
are read lazily, on first use.
"""

from __future__ import annotations

import asyncio
import datetime as _dt
import json
import math
import numbers
import os
import shutil
import warnings
from collections.abc import Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bionas_bench.errors import StoreError
from bionas_bench.ids import format_ids
from bionas_bench.space import ModelSpace, get_space

SCHEMA_VERSION = 1

#: Standard metric names (a store may hold a subset, or extra names).
STANDARD_METRICS: tuple[str, ...] = (
    "val_loss",
    "test_loss",
    "auroc",
    "aupr",
    "accuracy",
    "train_seconds",
    "epochs",
    "n_params",
)

#: Where the embedded default store lives inside the package.
EMBEDDED_STORE_DIR = Path(__file__).resolve().parent / "stores"
#: The file name the embedded default store is looked up under first.
DEFAULT_STORE_NAME = "default.zarr"

BASES = ("A", "C", "G", "T")
#: Binary cross-entropy above which a training counts as stuck at chance level: a
#: constant guess on balanced labels scores ln 2 = 0.6931. The original BioNAS table's
#: failed trainings are exactly these (its importer marks them failed).
CHANCE_LOSS = 0.69
_PACKED = "packed"


# ---------------------------------------------------------------------- helpers
def objective(loss: Any, knowledge: Any, lam: float) -> Any:
    """The BioNAS objective ``loss + lam * knowledge`` (Zhang et al. 2019); at
    ``lam = 0`` the loss alone, even where knowledge is NaN (a model without filters)."""
    return loss + lam * knowledge if lam != 0 else loss + 0.0


#: metrics where higher is better: the objective ``loss + lam * K`` cannot take them as its loss
HIGHER_IS_BETTER = frozenset({"auroc", "aupr", "accuracy"})
#: losses every done replicate not marked failed has a finite value of (validation checks them)
LOSS_METRICS = ("val_loss", "test_loss")


def check_loss_name(name: str, error: type[Exception] = StoreError) -> str:
    """Refuse a higher-is-better metric as the loss of the objective: ranked as a loss,
    the worst classifier would come out best, with no error to say so."""
    if name in HIGHER_IS_BETTER:
        raise error(
            f"loss {name!r} is a metric where higher is better; the objective needs a loss where "
            "lower is better (val_loss, test_loss)"
        )
    return name


def check_lam(lam: Any, error: type[Exception] = StoreError) -> float:
    """``lam`` (the knowledge weight of :func:`objective`) as a float: a real number, not
    a string or a bool, finite and >= 0; ``error`` otherwise."""
    if not isinstance(lam, numbers.Real) or isinstance(lam, bool | np.bool_):
        raise error(f"lam must be a number >= 0, got {lam!r}")
    value = float(lam)
    if not math.isfinite(value) or value < 0:
        raise error(f"lam must be a finite number >= 0, got {lam!r}")
    return value


def utc_now() -> str:
    """The current UTC time as an ISO-8601 string (for provenance)."""
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


def default_provenance(source: str, notes: str = "", **extra: Any) -> dict[str, Any]:
    """A provenance dict with the package version and creation time filled in."""
    from bionas_bench import __version__

    prov: dict[str, Any] = {
        "source": source,
        "package_version": __version__,
        "torch_version": None,
        "device": None,
        "created": utc_now(),
        "notes": notes,
    }
    prov.update(extra)
    return prov


def space_attrs(space: ModelSpace) -> dict[str, str]:
    """The ``space`` root attribute of a store built on ``space``."""
    return {
        "name": space.name,
        "manifest_text": space.manifest_text,
        "manifest_sha256": space.manifest_sha256,
    }


def _space_from_attrs(attrs: Mapping[str, Any], where: str) -> ModelSpace:
    """Rebuild the store's space from its recorded manifest (falls back to the shipped one)."""
    info = attrs.get("space")
    if not isinstance(info, Mapping) or "name" not in info:
        raise StoreError(f"store {where} has no valid 'space' attribute; it was not written by bionas_bench")
    text = info.get("manifest_text") or ""
    try:
        shipped = get_space(info["name"])
    except Exception:  # noqa: BLE001 - an unknown shipped name is fine when the text is recorded
        shipped = None
    if shipped is not None and (not text or shipped.manifest_sha256 == info.get("manifest_sha256")):
        return shipped
    if not text:
        raise StoreError(f"store {where} records space {info['name']!r} without manifest text")
    from bionas_bench.space import _space_cached

    return _space_cached(Path(f"<store {where}>/{info['name']}.toml"), text)


def _names(values: Sequence[str], what: str) -> list[str]:
    names = [str(v) for v in values]
    problem = _names_problem(names, what)
    if problem:
        raise StoreError(problem)
    return names


def _names_problem(names: list[str], what: str) -> str:
    """Why ``names`` cannot name arrays of a store ("" when they can): each becomes a path
    inside the store, so it must be non-empty, without '/', not hidden, and unique."""
    for name in names:
        if not name or "/" in name or name.startswith("."):
            return f"{what} name {name!r} is invalid; use a non-empty name without '/'"
    if len(set(names)) != len(names):
        return f"{what} names must be unique, got {names}"
    return ""


#: Root attributes read as tables: name -> (accepted JSON types, what the value must be).
_TABLE_ATTRS: dict[str, tuple[tuple[type, ...], str]] = {
    "dataset": ((dict,), "a table (a JSON object)"),
    "training": ((dict, type(None)), "a table (a JSON object) or null"),
    "knowledge": ((dict,), "a table (a JSON object)"),
    "provenance": ((dict,), "a table (a JSON object)"),
}
#: Root attributes that list array names: name -> what each entry names.
_NAME_ATTRS = {"metrics": "metric", "knowledge_sets": "knowledge set", "curves": "curve"}


def _short(value: Any, limit: int = 60) -> str:
    """``repr(value)`` cut to ``limit`` characters (a wrong attribute may be a long table)."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _attrs_problem(attrs: Mapping[str, Any]) -> str:
    """What is wrong with the types of root attributes ``attrs`` ("" when nothing).

    The store reads ``knowledge``, ``provenance``, ``dataset`` and ``training`` as tables
    and ``metrics``, ``knowledge_sets``, ``curves`` as lists of array names: a number
    there failed later with an AttributeError, and a string was iterated letter by
    letter as array names.
    """
    for key, (types, want) in _TABLE_ATTRS.items():
        if key in attrs and not isinstance(attrs[key], types):
            return f"root attribute {key!r} must be {want}, got {_short(attrs[key])}"
    for key, what in _NAME_ATTRS.items():
        names = attrs.get(key, [])
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            return f"root attribute {key!r} must be a list of {what} names (strings), got {_short(names)}"
        problem = _names_problem(names, what)
        if problem:
            return f"root attribute {key!r}: {problem}"
    seeds = attrs.get("replicate_seeds", [])
    if not isinstance(seeds, list) or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds):
        return f"root attribute 'replicate_seeds' must be a list of whole numbers, got {_short(seeds)}"
    return ""


def _not_a_store_root(location: str, why: str = "its zarr.json has no schema_version") -> str:
    """The error for a Zarr node that is not a store's root group: a folder inside a store
    (``S.zarr/metrics``), a sweep's cell, or a group another program wrote."""
    root = _enclosing_store(location)
    fix = (
        f"it lies inside the store {root}: pass that folder"
        if root is not None
        else "pass the folder of a store written by 'bionas-bench train' or 'bionas-bench store "
        "import-bionas-pub'"
    )
    return f"{location} is not the root of a bionas_bench store ({why}); {fix}"


def _enclosing_store(location: str) -> Path | None:
    """The nearest local folder above ``location`` that is a store's root, or None."""
    if "://" in location:
        return None
    return next((p for p in Path(location).absolute().parents if _is_store_root(p)), None)


def _is_store_root(folder: Path) -> bool:
    """Whether the local ``folder``'s zarr.json records a schema_version: the root of a
    bionas_bench store (possibly a damaged one), read without opening it."""
    try:
        meta = json.loads((folder / "zarr.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    attributes = meta.get("attributes") if isinstance(meta, dict) else None
    return isinstance(attributes, dict) and attributes.get("schema_version") is not None


def _open_group(path_or_url: str | Path, mode: str) -> Any:
    import zarr
    from zarr.errors import ContainsArrayError

    try:
        return zarr.open_group(str(path_or_url), mode=mode, zarr_format=3)
    except ContainsArrayError:  # an array's folder, e.g. S.zarr/metrics/val_loss
        raise StoreError(_not_a_store_root(str(path_or_url), "it is an array")) from None
    except (FileNotFoundError, KeyError) as exc:
        raise StoreError(
            f"no store at {path_or_url}; build one with 'bionas-bench train' or import the original "
            f"table with 'bionas-bench store import-bionas-pub DIR --out STORE'"
        ) from exc
    except Exception as exc:  # zarr raises several types for "not a v3 group"
        raise StoreError(f"cannot open {path_or_url} as a Zarr v3 store: {exc}") from exc


def _masked_median(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Per-row median of ``values`` over ``mask``-ed cells; NaN for rows with none."""
    data = np.where(mask, values, np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmedian(data, axis=1) if data.shape[1] else np.full(data.shape[0], np.nan)


def _replicate_counts(done: np.ndarray) -> dict[int, int]:
    """``{replicates done: architectures with that many}``, most replicates first."""
    counts = np.bincount(done.sum(axis=1), minlength=done.shape[1] + 1)
    return {int(k): int(counts[k]) for k in np.flatnonzero(counts)[::-1]}


# ---------------------------------------------------------------------- summary
def _place(record: Mapping[str, Any]) -> str:
    """One ``also_trained_on`` record in a few words: device (torch, package versions)."""
    versions = f"torch {record.get('torch_version')}"
    if record.get("package_version"):
        versions += f", bionas-bench {record['package_version']}"
    return f"{record.get('device')} ({versions})"


@dataclass(frozen=True)
class BestArch:
    """One architecture in a store summary's best-of list."""

    arch: int
    name: str
    value: float


@dataclass(frozen=True)
class ChoiceStats:
    """One choice of one layer over the done trainings of every architecture that makes it.

    The marginal view of a store (``store info --by-choice``): which first-layer op
    recovers the motifs, which pooling or dense choice leaves trainings at chance.
    """

    layer: str
    choice: str
    archs: int  #: architectures with this choice
    trainings_done: int
    trainings_chance: int | None  #: done trainings with loss > CHANCE_LOSS (None without a loss)
    median_loss: float
    median_knowledge: float


@dataclass(frozen=True)
class StoreSummary:
    """What ``bionas-bench store info`` shows: completion, failures, medians, best archs.

    A *training* is one architecture x replicate cell. ``replicate_counts`` maps a
    number of done replicates to how many architectures have exactly that many (so a
    store trained with a replicate subset reads "216 archs x 2 of 20"), and
    ``replicates_complete`` lists the replicate indices done for every architecture.
    Medians of each metric are over all done trainings (failed ones included, as recorded);
    best architectures rank per-architecture medians over done replicates.
    ``trainings_chance`` counts done trainings whose loss exceeds :data:`CHANCE_LOSS` (None
    without a loss metric): the farm marks only diverged (non-finite) trainings failed,
    the importer of the original table marks these, so the two counts differ in meaning.
    """

    location: str
    space: str
    num_archs: int
    num_replicates: int
    trainings_done: int
    archs_complete: int
    archs_empty: int
    trainings_failed: int
    trainings_chance: int | None
    replicate_counts: dict[int, int]
    replicates_complete: tuple[int, ...]
    source: str
    metric_medians: dict[str, float]
    #: what the results were made from (dataset, training, device, torch, created, original):
    #: the store's recorded provenance, the entries it has
    made_from: dict[str, str]
    knowledge_medians: dict[str, float]
    lam: float
    loss: str | None
    knowledge: str | None
    best: dict[str, list[BestArch]] = field(default_factory=dict)

    @property
    def trainings_total(self) -> int:
        return self.num_archs * self.num_replicates

    @property
    def completion(self) -> float:
        return self.trainings_done / self.trainings_total if self.trainings_total else 0.0

    def to_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        out = asdict(self)
        out["trainings_total"] = self.trainings_total
        out["completion"] = self.completion
        return out


# ---------------------------------------------------------------------- the store


def _read_only(array: np.ndarray) -> np.ndarray:
    """A read-only view of a handle's cached array: the oracle and the gold standard read
    the same cache, so an in-place edit by a caller would silently change what they serve
    (the handle itself still updates the cache as units are written)."""
    view = array.view()
    view.flags.writeable = False
    return view


async def _settled(read: Coroutine[Any, Any, Any]) -> Any:
    """Await the zarr read ``read``; when it fails, wait for the chunk reads it started.

    zarr reads the chunks of a selection as concurrent tasks on its event loop and gathers
    them: when one chunk cannot be read, the gather raises at once and its siblings are
    left pending. Still pending at exit, they were destroyed with hundreds of lines of
    asyncio tracebacks after the one-line error. Waiting (not cancelling) leaves any other
    thread's reads on the same loop alone; the siblings are reads, so they end.
    """
    before = asyncio.all_tasks()
    try:
        return await read
    except Exception:
        await asyncio.gather(*(asyncio.all_tasks() - before), return_exceptions=True)
        raise


def _read(read: Coroutine[Any, Any, Any]) -> np.ndarray:
    """Run the read of a zarr ``async_array`` on zarr's event loop (see ``_settled``)."""
    from zarr.core.sync import sync

    return np.asarray(sync(_settled(read)))


def _read_rows(array: Any, rows: np.ndarray | None) -> np.ndarray:
    """``array[...]``, or only ``rows`` of its first axis (the others hold the fill value)."""
    if rows is None:
        return _read(array.async_array.getitem(...))
    out = np.full(array.shape, array.fill_value, dtype=array.dtype)
    if rows.size:
        out[rows] = _read(array.async_array.get_orthogonal_selection((rows, slice(None))))
    return out


def _stored_chunk_keys(array: Any) -> set[str]:
    """The keys (relative to ``array``) of the chunks of ``array`` that are stored: one
    listing, no chunk read. zarr reads a missing chunk as the fill value without a word,
    so this is how a lost chunk is told from one never written."""
    from zarr.core.sync import sync

    path = array.store_path.path
    prefix = f"{path}/" if path else ""

    async def listing() -> set[str]:
        return {key[len(prefix) :] async for key in array.store_path.store.list_prefix(prefix)}

    return sync(listing())


def _stored_rows(array: Any) -> np.ndarray:
    """Sorted first-axis chunk indices of an ``[arch, ...]`` array chunked by architecture
    whose chunk is stored (the key of chunk ``(a, 0, ...)`` parsed back to ``a``)."""
    zeros = (0,) * (len(array.shape) - 1)
    key = array.metadata.chunk_key_encoding.encode_chunk_key((987654321, *zeros))
    before, _, after = key.partition("987654321")
    rows = [
        key[len(before) : len(key) - len(after)]
        for key in _stored_chunk_keys(array)
        if key.startswith(before) and key.endswith(after)
    ]
    return np.array(sorted(int(r) for r in rows if r.isdigit()), dtype=np.int64)


def _whole_chunk_stored(array: Any) -> bool:
    """Whether the one chunk of an array stored as a single chunk (a packed copy) is stored."""
    key = array.metadata.chunk_key_encoding.encode_chunk_key((0,) * len(array.shape))
    return key in _stored_chunk_keys(array)


def _all_fill(values: np.ndarray, fill: Any) -> bool:
    """Whether every value of ``values`` is the fill value ``fill`` (NaN equal to NaN)."""
    return bool(np.array_equal(values, np.full_like(values, fill), equal_nan=values.dtype.kind == "f"))


def settle_writes(timeout: float = 60.0) -> None:
    """Wait (at most ``timeout`` seconds) until zarr's I/O thread has finished its tasks.

    zarr runs every read and write on an event loop in its own thread; the calling thread
    only waits for it. A KeyboardInterrupt stops that wait but not the writes, which go
    on creating chunk files: a folder removed at that moment came back. Call this before
    removing a folder zarr was writing to.
    """
    from zarr.core.sync import loop

    running = loop[0]
    if running is None or running.is_closed() or not running.is_running():
        return

    async def drain() -> None:
        me = asyncio.current_task()
        while pending := asyncio.all_tasks() - {me}:
            await asyncio.gather(*pending, return_exceptions=True)

    future = asyncio.run_coroutine_threadsafe(drain(), running)
    try:
        future.result(timeout)
    except TimeoutError:
        future.cancel()


def check_new_store_path(path: str | Path, overwrite: bool) -> None:
    """Refuse to write a new store over an existing local ``path``, unless ``overwrite`` and
    ``path`` is a bionas_bench store: overwriting never deletes a folder or file that is
    not a store (a mistyped path must not cost a user their files)."""
    local = Path(str(path)) if "://" not in str(path) else None
    if local is None or not local.exists():
        return
    if not overwrite:
        raise StoreError(
            f"{path} already exists; choose another path, or overwrite it (--overwrite on the command "
            "line, overwrite=True from Python)"
        )
    if not _is_store_root(local):  # a store too damaged to open is still one: re-creating it is its fix
        raise StoreError(
            f"{path} exists and is not a bionas_bench store; overwriting replaces only a store, "
            "so choose another path"
        )


class Store:
    """A results store (Zarr v3 group): create, open, write units, read, validate, view.

    Use :meth:`Store.create` to make a new store and :meth:`Store.open` (or
    :func:`open_store`) to open one. ``done`` is read at open time; the other
    [arch, replicate] arrays are read together on first use (a handle that only writes,
    like a farm worker's, never holds them: on a large space each is 8 bytes per
    architecture and replicate). Readers see that snapshot (``done`` no newer than the
    values, which are written first); call :meth:`refresh` to see units written since.
    """

    def __init__(self, group: Any, location: str, mode: str, *, empty: bool = False) -> None:
        self._group = group
        self.location = location
        self.mode = mode
        self._attrs: dict[str, Any] = dict(group.attrs)
        version = self._attrs.get("schema_version")
        if version is None:
            raise StoreError(_not_a_store_root(location))
        if version != SCHEMA_VERSION:
            raise StoreError(
                f"store {location} has schema_version {version!r}; this bionas_bench reads version "
                f"{SCHEMA_VERSION}. Re-create or re-import the store with this version."
            )
        problem = _attrs_problem(self._attrs)
        if problem:
            raise StoreError(
                f"store {location} is damaged: {problem}; correct it in {location}/zarr.json, "
                "or re-create or re-import the store"
            )
        self.space: ModelSpace = _space_from_attrs(self._attrs, location)
        self._cache: dict[str, np.ndarray] = {}
        self._packed_dropped = False
        self._empty = empty  # just created: every array holds its fill value, no need to read it
        self._values_loaded = False
        self._load_done()

    # ------------------------------------------------------------ create / open
    @classmethod
    def create(
        cls,
        path: str | Path,
        *,
        space: ModelSpace | str,
        num_replicates: int,
        metrics: Sequence[str],
        knowledge_sets: Sequence[str],
        curves: Sequence[str] = (),
        max_epochs: int = 0,
        max_filters: int = 0,
        max_width: int = 0,
        attrs: Mapping[str, Any] | None = None,
        overwrite: bool = False,
    ) -> Store:
        """Create an empty store (all units not done) at ``path`` and open it ``r+``.

        ``attrs`` may give ``dataset``, ``training``, ``knowledge``, ``replicate_seeds``
        and ``provenance`` (and any extra keys); defaults are filled in. An existing
        store at ``path`` is refused unless ``overwrite=True``, and anything else that
        exists there always is (see :func:`check_new_store_path`). ``filters`` is created
        only when both ``max_filters`` and ``max_width`` are given; ``curves`` need
        ``max_epochs``.
        """
        space = get_space(space) if isinstance(space, str) else space
        if int(num_replicates) < 1:
            raise StoreError(f"num_replicates must be >= 1, got {num_replicates}")
        metric_names = _names(metrics, "metric")
        set_names = _names(knowledge_sets, "knowledge set")
        curve_names = _names(curves, "curve")
        if curve_names and max_epochs < 1:
            raise StoreError(f"curves {curve_names} need max_epochs >= 1, got {max_epochs}")
        if (max_filters > 0) != (max_width > 0):
            raise StoreError("give both max_filters and max_width (or neither) to store first-layer filters")
        local = Path(str(path)) if "://" not in str(path) else None
        check_new_store_path(path, overwrite)
        root_attrs = cls._root_attrs(space, num_replicates, metric_names, set_names, curve_names, attrs)
        problem = _attrs_problem(root_attrs)
        if problem:
            raise StoreError(f"cannot create store {path}: {problem} (given in attrs)")
        group = _open_group(path, "w") if overwrite or local is None else _open_group(path, "w-")
        group.attrs.update(root_attrs)
        shape2 = (space.size, int(num_replicates))
        chunk2 = (1, int(num_replicates))

        def make(name: str, dtype: str, shape: tuple[int, ...], fill: Any) -> None:
            group.create_array(
                name, shape=shape, chunks=(1, *shape[1:]), dtype=dtype, fill_value=fill, dimension_names=None
            )

        for name in metric_names:
            make(f"metrics/{name}", "float64", shape2, np.nan)
        for name in set_names:
            make(f"knowledge/{name}", "float64", shape2, np.nan)
        for name in curve_names:
            make(f"curves/{name}", "float32", (*shape2, int(max_epochs)), np.nan)
        if max_filters > 0:
            make("filters", "float32", (*shape2, int(max_filters), int(max_width), 4), np.nan)
        group.create_array("failed", shape=shape2, chunks=chunk2, dtype="bool", fill_value=False)
        group.create_array("done", shape=shape2, chunks=chunk2, dtype="bool", fill_value=False)
        return cls(group, str(path), "r+", empty=True)

    @staticmethod
    def _root_attrs(
        space: ModelSpace,
        num_replicates: int,
        metric_names: list[str],
        set_names: list[str],
        curve_names: list[str],
        attrs: Mapping[str, Any] | None,
    ) -> dict[str, Any]:
        extra = dict(attrs or {})
        seeds = [int(s) for s in extra.pop("replicate_seeds", range(int(num_replicates)))]
        if len(seeds) != int(num_replicates):
            raise StoreError(
                f"replicate_seeds has {len(seeds)} entries but num_replicates is {num_replicates}"
            )
        out: dict[str, Any] = {
            "schema_version": SCHEMA_VERSION,
            "space": space_attrs(space),
            "dataset": extra.pop("dataset", None) or {},
            "training": extra.pop("training", None),
            "knowledge": extra.pop("knowledge", None) or {"settings": {}, "motif_sets": {}},
            "replicate_seeds": seeds,
            "provenance": extra.pop("provenance", None) or default_provenance("unknown"),
            "metrics": metric_names,
            "knowledge_sets": set_names,
            "curves": curve_names,
        }
        for key in extra:
            if key in out:
                raise StoreError(f"attribute {key!r} is reserved by the store schema")
        out.update(extra)
        return out

    @classmethod
    def open(cls, path_or_url: str | Path, mode: str = "r") -> Store:
        """Open an existing store read-only (``"r"``) or for writing units (``"r+"``)."""
        if mode not in ("r", "r+"):
            raise StoreError(f"mode must be 'r' or 'r+', got {mode!r}")
        local = Path(str(path_or_url)) if "://" not in str(path_or_url) else None
        if local is not None and not local.exists():
            raise StoreError(
                f"no store at {path_or_url}; build one with 'bionas-bench train' or import the original "
                f"table with 'bionas-bench store import-bionas-pub DIR --out STORE'"
            )
        return cls(_open_group(path_or_url, mode), str(path_or_url), mode)

    # ------------------------------------------------------------ eager small arrays
    def _small_names(self) -> list[str]:
        names = [f"metrics/{m}" for m in self.metric_names]
        names += [f"knowledge/{k}" for k in self.knowledge_sets]
        return [*names, "failed", "done"]

    def _load_done(self) -> None:
        """Read ``done`` (and forget the other arrays until they are next needed)."""
        self._cache = {"done": self._read_small(["done"])["done"]}
        self._values_loaded = False

    def _values(self) -> dict[str, np.ndarray]:
        """The cache, with every [arch, replicate] array read (once per handle and refresh)."""
        if not self._values_loaded:
            self._cache.update(self._read_small(self._small_names()[:-1]))
            self._values_loaded = True
        return self._cache

    def _read_small(self, names: list[str]) -> dict[str, np.ndarray]:
        """Read the [arch, replicate] arrays ``names`` (packed copies when current; of a
        large, sparsely written store only the written rows)."""
        if self._empty:  # just created: every row holds the fill value, nothing to read
            packed, written = None, np.empty(0, dtype=np.int64)
        else:
            packed = self._packed_group()
            written = self._written_archs() if packed is None else None
        if packed is None:
            return {name: self._read_array(self._group, name, written) for name in names}
        return {name: self._read_packed(packed, name) for name in names}

    def _read_packed(self, packed: Any, name: str) -> np.ndarray:
        """The packed copy of ``name``; when its chunk is missing (lost, or never written by
        an older :meth:`pack` for an all-fill array), the per-architecture array's stored rows.

        A missing chunk reads as the fill value, so only a copy that reads as all fill
        costs the one listing that tells the two apart.
        """
        values = self._read_array(packed, name)
        array = self._array(name, packed)
        if not _all_fill(values, array.fill_value) or _whole_chunk_stored(array):
            return values
        return self._read_array(self._group, name, _stored_rows(self._array(name)))

    def _array(self, name: str, source: Any = None) -> Any:
        """The zarr array ``name`` of group ``source`` (default: the store's root); a missing
        array, or one whose metadata (``zarr.json``) cannot be read, is a StoreError naming it."""
        try:
            return (self._group if source is None else source)[name]
        except KeyError:
            raise StoreError(
                f"store {self.location} lists array {name!r} in its attributes but lacks it; "
                f"the store is damaged: re-create or re-import it"
            ) from None
        except (ValueError, TypeError) as exc:  # unreadable metadata (JSONDecodeError included)
            raise StoreError(
                f"store {self.location} is damaged: the metadata of array {name!r} cannot be read "
                f"({type(exc).__name__}: {exc}); re-create or re-import it"
            ) from None

    def _read_array(self, source: Any, name: str, rows: np.ndarray | None = None) -> np.ndarray:
        """Array ``name`` of group ``source`` (only ``rows``, see ``_read_rows``); a missing
        array or a chunk that cannot be decoded is a StoreError naming it."""
        array = self._array(name, source)
        try:
            return _read_rows(array, rows)
        except (RuntimeError, ValueError) as exc:  # a chunk that cannot be decoded
            raise StoreError(
                f"store {self.location} is damaged: array {name!r} cannot be read ({exc}); "
                f"re-create or re-import it"
            ) from None

    def _written_archs(self) -> np.ndarray | None:
        """The architectures with any replicate written, from the ``done`` array's chunk
        files, when that is cheaper than reading every row: a local store, not packed,
        with under half its architectures written (a store of a large space trained on a
        subset would otherwise cost one chunk lookup per architecture of the space).
        None: read every row."""
        local = Path(self.location) if "://" not in self.location else None
        if local is None or not (local / "done").is_dir() or self.space.size < 4096:
            return None
        rows = local / "done" / "c"  # chunk keys done/c/<arch>/0; absent while nothing is written
        names = [p.name for p in os.scandir(rows)] if rows.is_dir() else []
        ids = np.array(sorted(int(n) for n in names if n.isdigit()), dtype=np.int64)
        return ids if ids.size < self.space.size // 2 else None

    def _packed_group(self) -> Any | None:
        if not self._attrs.get("packed"):
            return None
        try:
            return self._group[_PACKED]
        except KeyError:
            return None

    def refresh(self) -> Store:
        """Re-read attributes and the [arch, replicate] arrays (to see new units)."""
        self._attrs = dict(self._group.attrs)
        self._empty = False
        self._load_done()
        return self

    # ------------------------------------------------------------ writing
    def write_unit(
        self,
        arch_id: int,
        *,
        metrics: Mapping[str, Any],
        knowledge: Mapping[str, Any],
        curves: Mapping[str, Any] | None = None,
        filters: Any | None = None,
        failed: Any | None = None,
        replicates: slice | Sequence[int] | np.ndarray | None = None,
    ) -> None:
        """Write one architecture's results for ``replicates`` (all by default), ``done`` last.

        ``metrics`` and ``knowledge`` must give every array of the store, each of shape
        ``(R,)`` where R is the number of replicates written (NaN where a value does not
        exist). ``curves`` values are ``(R, E)`` with ``E <= max_epochs`` (NaN-padded);
        ``filters`` is ``(R, J, W, 4)`` with ``J, W`` at most the store's (NaN-padded).
        ``failed`` defaults to all False. The unit becomes visible as done only after
        every other array has been written.
        """
        self._check_writable()
        arch = int(self.space.check_ids(int(arch_id)))
        reps = self._replicate_index(replicates)
        n = len(range(self.num_replicates)[reps]) if isinstance(reps, slice) else len(reps)
        values = self._unit_values(metrics, knowledge, curves, filters, failed, n)
        self._drop_packed()
        for name, value in values.items():
            self._write_cell(name, arch, reps, value)
        self._write_cell("done", arch, reps, np.ones(n, dtype=bool))
        self._empty = False  # values not yet read come from the arrays from now on
        self._cache["done"][arch, reps] = True
        if self._values_loaded:
            for name in self._small_names()[:-1]:
                self._cache[name][arch, reps] = values[name]

    def _check_writable(self) -> None:
        if self.mode != "r+":
            raise StoreError(f"store {self.location} is open read-only; open it with mode='r+' to write")

    def _replicate_index(self, replicates: Any) -> slice | np.ndarray:
        if replicates is None:
            return slice(None)
        if isinstance(replicates, slice):
            return replicates
        idx = np.asarray(replicates, dtype=np.int64).reshape(-1)
        if idx.size == 0 or idx.min() < 0 or idx.max() >= self.num_replicates:
            raise StoreError(
                f"replicates {idx.tolist()} must be non-empty and within 0..{self.num_replicates - 1}"
            )
        if np.unique(idx).size != idx.size:
            raise StoreError(f"replicates {idx.tolist()} contain duplicates")
        return idx

    def _unit_values(
        self,
        metrics: Mapping[str, Any],
        knowledge: Mapping[str, Any],
        curves: Mapping[str, Any] | None,
        filters: Any | None,
        failed: Any | None,
        n: int,
    ) -> dict[str, np.ndarray]:
        """Check names and shapes of one unit's values; return them keyed by array path."""
        out: dict[str, np.ndarray] = {}
        for kind, given, declared in (
            ("metrics", metrics, self.metric_names),
            ("knowledge", knowledge, self.knowledge_sets),
        ):
            unknown = sorted(set(given) - set(declared))
            missing = sorted(set(declared) - set(given))
            if unknown or missing:
                raise StoreError(
                    f"write_unit {kind}: unknown {unknown}, missing {missing}; this store has "
                    f"{kind} {declared} (pass NaN for a value that does not exist)"
                )
            for name in declared:
                out[f"{kind}/{name}"] = self._shaped(given[name], (n,), f"{kind} {name!r}", np.float64)
        for name, value in (curves or {}).items():
            if name not in self.curve_names:
                raise StoreError(
                    f"write_unit: unknown curve {name!r}; this store has curves {self.curve_names}"
                )
            out[f"curves/{name}"] = self._padded(value, (n, self.max_epochs), f"curve {name!r}")
        if filters is not None:
            if "filters" not in self._group:
                raise StoreError(
                    "write_unit: this store has no filters array (create it with max_filters/max_width)"
                )
            shape = (n, *self._group["filters"].shape[2:])
            out["filters"] = self._padded(filters, shape, "filters")
        fail = np.zeros(n, dtype=bool) if failed is None else np.asarray(failed, dtype=bool)
        out["failed"] = self._shaped(fail, (n,), "failed", bool)
        return out

    @staticmethod
    def _shaped(value: Any, shape: tuple[int, ...], what: str, dtype: Any) -> np.ndarray:
        arr = np.asarray(value, dtype=dtype)
        if arr.shape != shape:
            raise StoreError(f"write_unit {what} has shape {arr.shape}; expected {shape}")
        return arr

    @staticmethod
    def _padded(value: Any, shape: tuple[int, ...], what: str) -> np.ndarray:
        arr = np.asarray(value, dtype=np.float32)
        if (
            arr.ndim != len(shape)
            or arr.shape[0] != shape[0]
            or any(a > b for a, b in zip(arr.shape[1:], shape[1:], strict=True))
        ):
            raise StoreError(f"write_unit {what} has shape {arr.shape}; expected at most {shape}")
        out = np.full(shape, np.nan, dtype=np.float32)
        out[tuple(slice(0, s) for s in arr.shape)] = arr
        return out

    def _write_cell(self, name: str, arch: int, reps: slice | np.ndarray, value: np.ndarray) -> None:
        array = self._group[name]
        if isinstance(reps, slice):
            array[arch, reps] = value
        else:
            array.oindex[arch, reps] = value

    def note_training(self, device: str, torch_version: str) -> None:
        """Record in the provenance that this store is (also) trained on ``device`` with
        ``torch_version`` and this package's version, when that differs from where it was
        created: a store resumed on another machine or by another release says so
        (``provenance.also_trained_on``), so replicates trained in different places can be
        told apart from a store made in one place."""
        from bionas_bench import __version__

        self._check_writable()
        prov = dict(self._attrs.get("provenance") or {})
        here = {"device": device, "torch_version": torch_version, "package_version": __version__}
        also = list(prov.get("also_trained_on") or [])
        created = {k: prov.get(k) for k in here}
        if here == created or any({k: a.get(k) for k in here} == here for a in also):
            return
        prov["also_trained_on"] = [*also, {**here, "since": utc_now()}]
        self._group.attrs["provenance"] = prov
        self._attrs["provenance"] = prov

    def _drop_packed(self) -> None:
        """Invalidate the packed copies before the first write of this handle."""
        if self._packed_dropped:
            return
        if self._attrs.get("packed"):
            self._group.attrs["packed"] = False
            self._attrs["packed"] = False
        self._packed_dropped = True

    def write_block(
        self,
        *,
        metrics: Mapping[str, np.ndarray],
        knowledge: Mapping[str, np.ndarray],
        failed: np.ndarray,
        done: np.ndarray,
        curves: Mapping[str, np.ndarray] | None = None,
    ) -> None:
        """Write whole ``[arch, replicate]`` arrays at once (importers); ``done`` last.

        For converting complete tables, where writing unit by unit would be slow. Every
        metric and knowledge set must be given with shape ``(num_archs, num_replicates)``;
        ``curves`` (optional) with shape ``(num_archs, num_replicates, max_epochs)``.
        """
        self._check_writable()
        shape = (self.num_archs, self.num_replicates)
        values = {f"metrics/{k}": v for k, v in metrics.items()}
        values.update({f"knowledge/{k}": v for k, v in knowledge.items()})
        values["failed"] = failed
        if set(values) != set(self._small_names()[:-1]):
            raise StoreError(f"write_block needs exactly {self._small_names()[:-1]}, got {sorted(values)}")
        self._drop_packed()
        for name, value in (curves or {}).items():
            if name not in self.curve_names:
                raise StoreError(f"write_block: unknown curve {name!r}; this store has {self.curve_names}")
            curve = self._shaped(value, (*shape, self.max_epochs), f"curve {name!r}", np.float32)
            self._group[f"curves/{name}"][...] = curve
            self._cache.pop(f"curves/{name}", None)
        for name, value in values.items():
            dtype = bool if name == "failed" else np.float64
            self._group[name][...] = self._shaped(value, shape, name, dtype)
        self._group["done"][...] = self._shaped(done, shape, "done", bool)
        for name, value in values.items():
            self._cache[name] = np.array(value, dtype=bool if name == "failed" else np.float64)
        self._cache["done"] = np.array(done, dtype=bool)
        self._values_loaded, self._empty = True, False

    def pack(self, *, refresh: bool = True) -> None:
        """Write whole-array copies of the [arch, replicate] arrays for fast opening.

        Per-architecture chunks keep farm writes independent but make reading every
        array take hundreds of small reads; the packed copies make opening a complete
        store take milliseconds. The copies are marked stale (attribute ``packed``
        False) by the first write through any handle, and ignored until packed again.
        Every copy's one chunk is written, even when it holds only the fill value (NaN
        for floats, as in the per-architecture arrays), so :meth:`validate` can report a
        missing one as lost.
        ``refresh=False`` packs this handle's view without re-reading (when this handle
        wrote every unit).
        """
        self._check_writable()
        if refresh:
            self.refresh()
        import zarr

        cache = self._values()  # before the old packed copies, which it may read, are replaced
        packed = zarr.open_group(store=self._group.store, path=_PACKED, mode="w", zarr_format=3)
        for name in self._small_names():
            value = cache[name]
            copy = packed.create_array(
                name,
                shape=value.shape,
                chunks=value.shape,
                dtype=value.dtype,
                fill_value=np.nan if value.dtype.kind == "f" else False,
                overwrite=True,
                config={"write_empty_chunks": True},  # a missing chunk is then always damage
            )
            copy[...] = value
        self._group.attrs["packed"] = True
        self._attrs["packed"] = True

    # ------------------------------------------------------------ reading
    @property
    def attrs(self) -> dict[str, Any]:
        """A copy of the root attributes."""
        return dict(self._attrs)

    @property
    def num_archs(self) -> int:
        return self.space.size

    @property
    def num_replicates(self) -> int:
        return int(self._cache["done"].shape[1])

    @property
    def metric_names(self) -> list[str]:
        return list(self._attrs.get("metrics", []))

    @property
    def knowledge_sets(self) -> list[str]:
        return list(self._attrs.get("knowledge_sets", []))

    @property
    def curve_names(self) -> list[str]:
        return list(self._attrs.get("curves", []))

    @property
    def default_knowledge_set(self) -> str | None:
        """``knowledge.default_set`` when recorded, else the first set (the unmasked one by convention)."""
        default = (self._attrs.get("knowledge") or {}).get("default_set")
        if default in self.knowledge_sets:
            return default
        return self.knowledge_sets[0] if self.knowledge_sets else None

    @property
    def replicate_seeds(self) -> list[int]:
        return [int(s) for s in self._attrs.get("replicate_seeds", [])]

    @property
    def max_epochs(self) -> int:
        if not self.curve_names:
            return 0
        return int(self._array(f"curves/{self.curve_names[0]}").shape[2])

    @property
    def has_filters(self) -> bool:
        return "filters" in self._group

    @property
    def done(self) -> np.ndarray:
        """Bool ``[arch, replicate]``: the unit was completely written (read-only)."""
        return _read_only(self._cache["done"])

    @property
    def failed(self) -> np.ndarray:
        """Bool ``[arch, replicate]``: training failed (metrics kept when they exist; read-only)."""
        return _read_only(self._values()["failed"])

    def metric(self, name: str) -> np.ndarray:
        """Float64 ``[arch, replicate]`` values of metric ``name`` (NaN where not written;
        read-only)."""
        if name not in self.metric_names:
            raise StoreError(f"store {self.location} has no metric {name!r}; it has {self.metric_names}")
        return _read_only(self._values()[f"metrics/{name}"])

    def knowledge(self, name: str) -> np.ndarray:
        """Float64 ``[arch, replicate]`` knowledge dissimilarity against motif set ``name``
        (read-only)."""
        if name not in self.knowledge_sets:
            raise StoreError(
                f"store {self.location} has no knowledge set {name!r}; it has {self.knowledge_sets}"
            )
        return _read_only(self._values()[f"knowledge/{name}"])

    def curve(self, name: str) -> np.ndarray:
        """Float32 ``[arch, replicate, epoch]`` learning curve ``name`` (read on first use;
        read-only)."""
        key = f"curves/{name}"
        if name not in self.curve_names:
            raise StoreError(
                f"store {self.location} has no curve {name!r}; it has {self.curve_names or 'none'}"
            )
        if key not in self._cache:
            self._cache[key] = self._read_array(self._group, key)
        return _read_only(self._cache[key])

    def filters(self, arch_ids: Any) -> np.ndarray:
        """First-layer filters ``(n, replicate, filter, width, 4)`` of the given architectures."""
        if not self.has_filters:
            raise StoreError(f"store {self.location} holds no filters (it was created without max_filters)")
        ids = np.atleast_1d(self.space.check_ids(arch_ids))
        return _read(self._array("filters").async_array.get_orthogonal_selection((ids,)))

    def missing_units(self) -> np.ndarray:
        """Ids of architectures with at least one replicate not done."""
        return np.flatnonzero(~self.done.all(axis=1))

    # ------------------------------------------------------------ validation / summary
    def validate(self) -> None:
        """Check attributes, shapes, dtypes, stored chunks and trained values; raise
        StoreError naming the first problem.

        zarr reads a chunk that is not stored as its fill value without a word, so a lost
        chunk served zeros (a packed copy) or NaN and "not done" (a per-architecture
        array). Chunks are therefore checked by listing them (none is read): the one chunk
        of each current packed copy, and the chunk of every ``[arch, replicate]`` array of
        each architecture with done replicates (see ``_check_row_chunks``). A done replicate
        not marked failed must also have a finite loss and, where its architecture has
        first-layer filters, finite knowledge. Curves and filters are optional per unit
        (``write_unit`` takes them or not), so their chunks are not required.
        """
        where = f"store {self.location}"
        for key in ("space", "dataset", "knowledge", "replicate_seeds", "provenance"):
            if key not in self._attrs:
                raise StoreError(f"{where} lacks root attribute {key!r}")
        shape = (self.num_archs, self.num_replicates)
        if len(self.replicate_seeds) != self.num_replicates:
            raise StoreError(
                f"{where}: replicate_seeds has {len(self.replicate_seeds)} entries "
                f"for {self.num_replicates} replicates"
            )
        expected = {name: ("float64", shape) for name in self._small_names()[:-2]}
        expected.update({"failed": ("bool", shape), "done": ("bool", shape)})
        epochs = self.max_epochs
        for name in self.curve_names:
            expected[f"curves/{name}"] = ("float32", (*shape, epochs))
        for name, (dtype, want) in expected.items():
            self._check_array(name, dtype, want, where)
        if self.has_filters:
            fshape = self._array("filters").shape
            if tuple(fshape[:2]) != shape or len(fshape) != 5 or fshape[4] != 4:
                raise StoreError(
                    f"{where}: filters has shape {fshape}; expected {shape} + (filter, width, 4)"
                )
        for name, value in self._values().items():
            if name in self._small_names() and value.shape != shape:
                raise StoreError(f"{where}: {name} has shape {value.shape}; expected {shape}")
        self._check_row_chunks(where)
        self._check_packed_chunks(where)
        self._check_trained_values(where)

    def _check_row_chunks(self, where: str) -> None:
        """Every architecture with a done replicate has its ``done`` chunk; one with a done
        replicate not marked failed has its chunk of every metric and of every knowledge
        set (knowledge only where it has first-layer filters). zarr stores no chunk that
        holds only NaN, so an architecture whose done replicates all failed (one that cannot
        be built is written as NaN), or the knowledge of one without filters, may lack them."""
        done = self.done
        trained = np.flatnonzero((done & ~self.failed).any(axis=1))
        required = {"done": np.flatnonzero(done.any(axis=1))}
        required.update({f"metrics/{m}": trained for m in self.metric_names})
        scored = trained[self._has_filters(trained)]
        required.update({f"knowledge/{k}": scored for k in self.knowledge_sets})
        for name, rows in required.items():
            missing = np.setdiff1d(rows, _stored_rows(self._array(name))) if rows.size else rows
            if missing.size:
                raise StoreError(
                    f"{where} is damaged: array {name!r} lacks the chunks of {missing.size} "
                    f"architecture(s) with done replicates ({format_ids(missing[:20])}"
                    f"{', ...' if missing.size > 20 else ''}), which would read as "
                    f"{'not done' if name == 'done' else 'NaN'}; re-create or re-import the store"
                )

    def _check_packed_chunks(self, where: str) -> None:
        """Each current packed copy has its one chunk; only a copy that an older ``pack`` left
        unwritten because it held nothing but the fill value may lack it, and then its
        per-architecture array stores no chunk either."""
        packed = self._packed_group()
        if packed is None:
            return
        for name in self._small_names():
            copy = self._array(name, packed)
            if _whole_chunk_stored(copy) or not _stored_rows(self._array(name)).size:
                continue
            raise StoreError(
                f"{where} is damaged: the chunk of the packed copy {_PACKED}/{name} is missing; "
                "re-pack the store (in Python: Store.open(STORE, mode='r+').pack()), or re-create "
                "or re-import it"
            )

    def _check_trained_values(self, where: str) -> None:
        """A done replicate not marked failed has a finite loss (each of :data:`LOSS_METRICS`
        the store has) and finite knowledge where its architecture has first-layer filters:
        a model that trained has both, so a NaN there is a lost value."""
        trained = self.done & ~self.failed
        rows = np.flatnonzero(trained.any(axis=1))
        if not rows.size:
            return
        scored = np.zeros(self.num_archs, dtype=bool)
        scored[rows] = self._has_filters(rows)
        columns = {m: (self.metric(m), trained) for m in LOSS_METRICS if m in self.metric_names}
        columns.update(
            {f"knowledge {k}": (self.knowledge(k), trained & scored[:, None]) for k in self.knowledge_sets}
        )
        for label, (values, must) in columns.items():
            bad = must & ~np.isfinite(values)
            if bad.any():
                arch, rep = np.argwhere(bad)[0]
                raise StoreError(
                    f"{where} is damaged: {int(bad.sum())} done replicate(s) not marked failed have no "
                    f"finite {label} (the first: architecture {arch}, replicate {rep}); a trained model "
                    "has one: re-create or re-import the store"
                )

    def _has_filters(self, archs: np.ndarray) -> np.ndarray:
        """Whether each of ``archs`` makes a choice with first-layer filters (one with
        ``filters`` and ``kernel_size``, as the farm sizes the filters array): knowledge is
        scored on those filters, so an architecture without any has NaN knowledge."""
        scans = np.zeros(len(archs), dtype=bool)
        if not len(archs):
            return scans
        digits = self.space.decode(archs)
        for index, layer in enumerate(self.space.layers):
            makes = np.array([{"filters", "kernel_size"} <= set(c.kwargs) for c in layer.choices])
            scans |= makes[digits[:, index]]
        return scans

    def _check_array(self, name: str, dtype: str, shape: tuple[int, ...], where: str) -> None:
        array = self._array(name)
        if tuple(array.shape) != shape or str(array.dtype) != dtype:
            raise StoreError(
                f"{where}: array {name!r} is {array.dtype}{tuple(array.shape)}; expected {dtype}{shape}"
            )
        if array.chunks[0] != 1:
            raise StoreError(f"{where}: array {name!r} has first-axis chunk {array.chunks[0]}; expected 1")

    def arch_medians(self, values: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
        """Per-architecture median of ``values`` over done replicates (or ``mask``)."""
        return _masked_median(values, self.done if mask is None else mask)

    def summary(
        self, lam: float = 1.0, top: int = 3, loss: str | None = None, knowledge: str | None = None
    ) -> StoreSummary:
        """Completion, failures, medians of each metric and the best architectures.

        Best lists rank per-architecture medians over done replicates (failed included,
        as recorded) of ``loss`` (default ``val_loss`` when present), ``knowledge``
        (default: :attr:`default_knowledge_set`) and the objective loss + lam * knowledge;
        ``top`` architectures each (0: no lists).
        """
        if isinstance(top, bool) or not isinstance(top, int | np.integer) or top < 0:
            raise StoreError(
                f"top must be a whole number >= 0 (0: no lists of best architectures), got {top!r}"
            )
        lam = check_lam(lam)
        done = self.done
        loss, knowledge = self._columns(loss, knowledge)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            metric_medians = {
                m: float(np.nanmedian(self.metric(m)[done])) if done.any() else float("nan")
                for m in self.metric_names
            }
            knowledge_medians = {
                k: float(np.nanmedian(self.knowledge(k)[done])) if done.any() else float("nan")
                for k in self.knowledge_sets
            }
        best: dict[str, list[BestArch]] = {}
        columns: dict[str, np.ndarray] = {}
        if loss is not None:
            columns[f"loss ({loss})"] = self.arch_medians(self.metric(loss))
        if knowledge is not None:
            columns[f"knowledge ({knowledge})"] = self.arch_medians(self.knowledge(knowledge))
        if loss is not None and knowledge is not None:
            columns[f"objective (lam={lam:g})"] = objective(
                columns[f"loss ({loss})"], columns[f"knowledge ({knowledge})"], lam
            )
        for label, values in columns.items():
            if top:
                best[label] = self._best(values, top)
        return StoreSummary(
            location=self.location,
            space=self.space.name,
            num_archs=self.num_archs,
            num_replicates=self.num_replicates,
            trainings_done=int(done.sum()),
            archs_complete=int(done.all(axis=1).sum()),
            archs_empty=int((~done.any(axis=1)).sum()),
            trainings_failed=int((done & self.failed).sum()),
            trainings_chance=None if loss is None else int((done & (self.metric(loss) > CHANCE_LOSS)).sum()),
            replicate_counts=_replicate_counts(done),
            replicates_complete=tuple(int(r) for r in np.flatnonzero(done.all(axis=0))),
            source=str((self._attrs.get("provenance") or {}).get("source", "unknown")),
            metric_medians=metric_medians,
            made_from=self._made_from(),
            knowledge_medians=knowledge_medians,
            lam=float(lam),
            loss=loss,
            knowledge=knowledge,
            best=best,
        )

    def _made_from(self) -> dict[str, str]:
        """The recorded inputs of the results: manifest names, device, versions, date."""
        prov = self._attrs.get("provenance") or {}
        found = {
            "dataset": (self._attrs.get("dataset") or {}).get("name"),
            "training": (self._attrs.get("training") or {}).get("name"),
            "device": prov.get("device"),
            "torch": prov.get("torch_version"),
            "bionas-bench": prov.get("package_version"),
            "also trained on": ", ".join(_place(a) for a in prov.get("also_trained_on") or []),
            "created": str(prov.get("created") or "")[:10],
            "original": prov.get("original_repository"),
        }
        return {k: str(v) for k, v in found.items() if v not in (None, "", "None")}

    def _columns(self, loss: str | None, knowledge: str | None) -> tuple[str | None, str | None]:
        """The loss metric and knowledge set a summary uses: as given, else ``val_loss`` (when
        the store has it) and :attr:`default_knowledge_set`."""
        loss = check_loss_name(loss) if loss else ("val_loss" if "val_loss" in self.metric_names else None)
        return loss, knowledge or self.default_knowledge_set

    def choice_summary(self, loss: str | None = None, knowledge: str | None = None) -> list[ChoiceStats]:
        """:class:`ChoiceStats` of every choice of every layer, in the space's order.

        Medians are over the done trainings (failed included, as recorded) of the
        architectures that make the choice; ``loss`` and ``knowledge`` default as in
        :meth:`summary`.
        """
        done = self.done
        loss, knowledge = self._columns(loss, knowledge)
        nan = np.full(done.shape, np.nan)
        loss_values = self.metric(loss) if loss is not None else nan
        knowledge_values = self.knowledge(knowledge) if knowledge is not None else nan
        digits = self.space.decode(np.arange(self.num_archs))
        rows = []
        for index, layer in enumerate(self.space.layers):
            for c, choice in enumerate(layer.choice_names):
                makes = digits[:, index] == c
                mask = done & makes[:, None]
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", RuntimeWarning)
                    median_loss = float(np.nanmedian(loss_values[mask])) if mask.any() else float("nan")
                    median_k = float(np.nanmedian(knowledge_values[mask])) if mask.any() else float("nan")
                rows.append(
                    ChoiceStats(
                        layer=layer.name,
                        choice=choice,
                        archs=int(makes.sum()),
                        trainings_done=int(mask.sum()),
                        trainings_chance=None
                        if loss is None
                        else int((mask & (loss_values > CHANCE_LOSS)).sum()),
                        median_loss=median_loss,
                        median_knowledge=median_k,
                    )
                )
        return rows

    def _best(self, values: np.ndarray, top: int) -> list[BestArch]:
        finite = np.flatnonzero(np.isfinite(values))
        order = finite[np.argsort(values[finite], kind="stable")][:top]
        return [BestArch(int(a), self.space.arch_name(int(a)), float(values[a])) for a in order]

    # ------------------------------------------------------------ xarray view
    def to_xarray(self) -> Any:
        """An ``xarray.Dataset`` view: dims arch, replicate (, epoch, filter, width, base).

        Variables: one per metric (its name), ``knowledge_<set>`` per knowledge set,
        ``curve_<name>`` per curve, ``filters`` (when stored), ``done`` and ``failed``.
        Coordinates: ``arch`` (ids), ``arch_name`` (readable), ``layer_<name>`` (the
        chosen op of each layer), ``replicate`` and ``seed``. Curves and filters are
        lazy dask arrays when dask is installed (read only when computed).
        """
        import xarray as xr

        dims2 = ("arch", "replicate")
        data: dict[str, Any] = {m: (dims2, self.metric(m)) for m in self.metric_names}
        data.update({f"knowledge_{k}": (dims2, self.knowledge(k)) for k in self.knowledge_sets})
        for name in self.curve_names:
            data[f"curve_{name}"] = ((*dims2, "epoch"), self._lazy(f"curves/{name}"))
        if self.has_filters:
            data["filters"] = ((*dims2, "filter", "width", "base"), self._lazy("filters"))
        data["done"] = (dims2, self.done)
        data["failed"] = (dims2, self.failed)
        choices = self.space.enumerate()
        coords: dict[str, Any] = {
            "arch": np.arange(self.num_archs),
            "arch_name": ("arch", np.array(self.space.arch_names(), dtype=object)),
            "replicate": np.arange(self.num_replicates),
            "seed": ("replicate", np.array(self.replicate_seeds, dtype=np.int64)),
        }
        for i, layer in enumerate(self.space.layers):
            names = np.array(layer.choice_names, dtype=object)
            coords[f"layer_{layer.name}"] = ("arch", names[choices[:, i]])
        if self.curve_names:
            coords["epoch"] = np.arange(1, self.max_epochs + 1)
        if self.has_filters:
            coords["base"] = list(BASES)
        attrs = {
            "space": self.space.name,
            "source": str((self._attrs.get("provenance") or {}).get("source", "unknown")),
            "location": self.location,
        }
        return xr.Dataset(data, coords=coords, attrs=attrs)

    def _lazy(self, name: str) -> Any:
        array = self._array(name)
        try:
            import dask.array as da
        except ImportError:  # pragma: no cover - dask is a dependency; numpy fallback
            return np.asarray(array[...])
        return da.from_array(array, chunks=array.chunks, name=f"{self.location}:{name}", lock=False)

    def __repr__(self) -> str:
        done = int(self.done.sum())
        return (
            f"Store({self.location!r}, space={self.space.name!r}, archs={self.num_archs}, "
            f"replicates={self.num_replicates}, done={done}/{self.done.size})"
        )


# ---------------------------------------------------------------------- default store
def embedded_store_path() -> Path | None:
    """The embedded default store in ``bionas_bench/stores/``, or None when none is shipped.

    ``default.zarr`` wins; otherwise the only ``*.zarr`` directory there.
    """
    preferred = EMBEDDED_STORE_DIR / DEFAULT_STORE_NAME
    if preferred.is_dir():
        return preferred
    found = (
        sorted(p for p in EMBEDDED_STORE_DIR.glob("*.zarr") if p.is_dir())
        if EMBEDDED_STORE_DIR.is_dir()
        else []
    )
    return found[0] if len(found) == 1 else None


def open_store(path: str | Path | None = None, mode: str = "r") -> Store:
    """Open the store at ``path`` (local path or fsspec URL), or the embedded default store."""
    if path is None:
        path = embedded_store_path()
        if path is None:
            raise StoreError(
                f"no embedded default store is shipped in {EMBEDDED_STORE_DIR} yet; build one with "
                f"'bionas-bench train', or import the original table with 'bionas-bench store "
                f"import-bionas-pub ../shared/bionas_pub --out STORE', then call open_store(STORE)"
            )
    return Store.open(path, mode=mode)


def remove_store(path: str | Path) -> None:
    """Delete a local store directory (used by importers that replace a store)."""
    shutil.rmtree(path)
