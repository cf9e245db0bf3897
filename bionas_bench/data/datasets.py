"""Datasets built from manifests in ``data_manifests/datasets/``.

A dataset manifest is TOML with these parts (unknown keys are rejected)::

    description = "one line shown by `bionas-bench data list`"
    type = "simulated"            # or "fasta"
    seed = 1                      # drives simulation and splits (independent streams)

    [simulation]                  # type = "simulated"
    length = 200
    n_positive = 10000
    n_negative = 10000
    background = [0.3, 0.2, 0.2, 0.3]   # A, C, G, T
    task = "binary"               # or "multitask": one label per embedded motif
    [[simulation.embed]]          # one table per embedded motif
    motif = "MYC"                 # a key of [motifs]
    min = 1
    max = 1
    mean = 1.0
    zero_prob = 0.0

    [fasta]                       # type = "fasta"
    positives = "{bionas_pub}/simdata/....fa.gz"
    negatives = "{bionas_pub}/simdata/....fa.gz"
    label = "positive"
    allow_mixed_lengths = false   # true: pad shorter records with N

    [splits]                      # fractions summing to 1 ...
    train = 0.8
    validation = 0.1
    test = 0.1
    # ... or mode = "per_replicate": a single split "all" holding every index; the
    # training manifest then draws a split per replicate (as the original BioNAS did).

    [motifs.MYC]                  # one motif per key; the key becomes its name
    source = "jaspar"             # jaspar | encode | jaspar_file | meme_file
    id = "MA0147.3"               # or name = "..."
    release = "JASPAR2024"        # jaspar only; path = "..." for file sources

    [motif_sets]                  # motif sets that score knowledge K for this dataset
    myc = ["MYC"]

Paths may start with ``{bionas_pub}``, the folder of the original BioNAS data
(``$BIONAS_PUB_DIR``, else ``../shared/bionas_pub`` from the current directory or
from the repository root); other relative paths are relative to the manifest.

Sequences are positives first, then negatives; building is deterministic, so the
same manifest gives byte-identical arrays and the same :attr:`Dataset.sha256`.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bionas_bench.data.fasta import onehot as _onehot
from bionas_bench.data.fasta import read_fasta
from bionas_bench.data.motifs import Motif, MotifSpec
from bionas_bench.data.simulate import Embedding, SimulationConfig, simulate
from bionas_bench.errors import BionasError, DataError, ManifestError
from bionas_bench.manifests import Fields, Manifest, available, load_manifest

DATASET_TYPES = ("simulated", "fasta")
SPLIT_NAMES = ("train", "validation", "test")
PER_REPLICATE = "per_replicate"
BIONAS_PUB_ENV = "BIONAS_PUB_DIR"
BIONAS_PUB_TOKEN = "{bionas_pub}"
CACHE_FORMAT = 1

Progress = Callable[[str], None]


# ----------------------------------------------------------------------------------------
# Typed manifest
# ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EmbedSpec:
    """``[[simulation.embed]]``: counts of one motif (a key of ``[motifs]``)."""

    motif: str
    min_count: int
    max_count: int
    mean: float
    zero_prob: float


@dataclass(frozen=True)
class SimulationSpec:
    """``[simulation]`` of a dataset manifest."""

    length: int
    n_positive: int
    n_negative: int
    background: tuple[float, float, float, float]
    task: str
    embed: tuple[EmbedSpec, ...]


@dataclass(frozen=True)
class FastaSpec:
    """``[fasta]`` of a dataset manifest (paths still unresolved)."""

    positives: str
    negatives: str
    label: str = "positive"
    allow_mixed_lengths: bool = False


@dataclass(frozen=True)
class SplitSpec:
    """``[splits]``: fractions of train/validation/test, or ``per_replicate``."""

    mode: str
    fractions: tuple[tuple[str, float], ...] = ()


@dataclass(frozen=True)
class DatasetSpec:
    """A validated dataset manifest."""

    name: str
    description: str
    type: str
    seed: int
    splits: SplitSpec
    motifs: dict[str, MotifSpec]
    motif_sets: dict[str, tuple[str, ...]]
    simulation: SimulationSpec | None = None
    fasta: FastaSpec | None = None
    manifest: Manifest | None = field(default=None, repr=False)


def parse_dataset_manifest(manifest: Manifest) -> DatasetSpec:
    """Validate a loaded dataset manifest; every problem is a ManifestError naming it."""
    where = f"dataset manifest {manifest.path}"
    top = Fields(manifest.data, where)
    description = top.get("description", str, "")
    kind = top.get("type", str)
    seed = top.get("seed", int, 0)
    if seed < 0:
        raise ManifestError(f"{where}: 'seed' must be an integer >= 0 (numpy's SeedSequence), got {seed}")
    if kind not in DATASET_TYPES:
        raise ManifestError(f"{where}: 'type' must be one of {', '.join(DATASET_TYPES)}, got {kind!r}")
    motifs = _parse_motifs(top.get("motifs", dict, {}), f"{where} [motifs]")
    motif_sets = _parse_motif_sets(top.get("motif_sets", dict, {}), motifs, f"{where} [motif_sets]")
    splits = _parse_splits(top.table("splits"), f"{where} [splits]")
    simulation = fasta = None
    if kind == "simulated":
        simulation = _parse_simulation(top.table("simulation"), motifs, f"{where} [simulation]")
    else:
        fasta = _parse_fasta(top.table("fasta"), f"{where} [fasta]")
    top.finish()
    return DatasetSpec(
        name=manifest.name,
        description=description,
        type=kind,
        seed=seed,
        splits=splits,
        motifs=motifs,
        motif_sets=motif_sets,
        simulation=simulation,
        fasta=fasta,
        manifest=manifest,
    )


def _parse_motifs(table: dict[str, Any], where: str) -> dict[str, MotifSpec]:
    specs: dict[str, MotifSpec] = {}
    for key, motif_table in table.items():  # each key is one motif table
        spec = MotifSpec.from_table(motif_table, f"{where}.{key}")
        if len(spec.keys) != 1:
            raise ManifestError(f"{where}.{key}: give exactly one 'id' or 'name' (the key names one motif)")
        specs[key] = spec
    return specs


def _parse_motif_sets(
    table: dict[str, Any], motifs: dict[str, MotifSpec], where: str
) -> dict[str, tuple[str, ...]]:
    sets: dict[str, tuple[str, ...]] = {}
    for set_name, members in table.items():
        if not isinstance(members, list) or not members or not all(isinstance(m, str) for m in members):
            raise ManifestError(
                f"{where}: {set_name!r} must be a non-empty list of motif keys, got {members!r}"
            )
        unknown = [m for m in members if m not in motifs]
        if unknown:
            raise ManifestError(
                f"{where}: {set_name!r} names unknown motif(s) {unknown}; define them under [motifs] "
                f"(defined: {', '.join(motifs) or 'none'})"
            )
        sets[set_name] = tuple(members)
    return sets


def _parse_splits(fields: Fields, where: str) -> SplitSpec:
    mode = fields.get("mode", str, "fractions")
    if mode == PER_REPLICATE:
        fields.finish()
        return SplitSpec(mode=mode)
    if mode != "fractions":
        raise ManifestError(f"{where}: 'mode' must be 'fractions' or {PER_REPLICATE!r}, got {mode!r}")
    fractions = tuple((name, fields.get(name, float)) for name in SPLIT_NAMES)
    fields.finish()
    values = np.array([f for _, f in fractions])
    if np.any(values < 0) or not np.isclose(values.sum(), 1.0, atol=1e-9):
        raise ManifestError(
            f"{where}: train, validation and test must be >= 0 and sum to 1, got {values.tolist()}"
        )
    return SplitSpec(mode=mode, fractions=fractions)


def _parse_simulation(fields: Fields, motifs: dict[str, MotifSpec], where: str) -> SimulationSpec:
    length = fields.get("length", int)
    n_positive = fields.get("n_positive", int)
    n_negative = fields.get("n_negative", int)
    background = fields.get("background", list, [0.3, 0.2, 0.2, 0.3])
    task = fields.get("task", str, "binary")
    raw_embed = fields.get("embed", list)
    fields.finish()
    if len(background) != 4 or not all(
        isinstance(b, int | float) and not isinstance(b, bool) for b in background
    ):
        raise ManifestError(f"{where}: 'background' must be 4 numbers (A, C, G, T), got {background!r}")
    embed = []
    for i, table in enumerate(raw_embed):
        e = Fields(table, f"{where} embed[{i}]")
        spec = EmbedSpec(
            motif=e.get("motif", str),
            min_count=e.get("min", int, 1),
            max_count=e.get("max", int, 1),
            mean=e.get("mean", float, 1.0),
            zero_prob=e.get("zero_prob", float, 0.0),
        )
        e.finish()
        if spec.motif not in motifs:
            raise ManifestError(
                f"{where} embed[{i}]: motif {spec.motif!r} is not defined under [motifs] "
                f"(defined: {', '.join(motifs) or 'none'})"
            )
        embed.append(spec)
    if not embed:
        raise ManifestError(f"{where}: add at least one [[simulation.embed]] table")
    return SimulationSpec(
        length=length,
        n_positive=n_positive,
        n_negative=n_negative,
        background=tuple(float(b) for b in background),  # type: ignore[arg-type]
        task=task,
        embed=tuple(embed),
    )


def _parse_fasta(fields: Fields, where: str) -> FastaSpec:
    spec = FastaSpec(
        positives=fields.get("positives", str),
        negatives=fields.get("negatives", str),
        label=fields.get("label", str, "positive"),
        allow_mixed_lengths=fields.get("allow_mixed_lengths", bool, False),
    )
    fields.finish()
    return spec


# ----------------------------------------------------------------------------------------
# Paths
# ----------------------------------------------------------------------------------------


def find_bionas_pub_dir() -> Path | None:
    """The original BioNAS data folder, or None when it cannot be found.

    Looked up in ``$BIONAS_PUB_DIR``, then ``../shared/bionas_pub`` relative to the
    current directory, then relative to the repository root.
    """
    env = os.environ.get(BIONAS_PUB_ENV)
    if env:
        return Path(env) if Path(env).is_dir() else None
    repo_root = Path(__file__).resolve().parents[2]
    for candidate in (
        Path.cwd() / ".." / "shared" / "bionas_pub",
        repo_root / ".." / "shared" / "bionas_pub",
    ):
        if candidate.is_dir():
            return candidate.resolve()
    return None


def bionas_pub_places() -> str:
    """Where :func:`find_bionas_pub_dir` looks, for messages saying it found nothing."""
    env = os.environ.get(BIONAS_PUB_ENV)
    if env:
        return f"${BIONAS_PUB_ENV}={env}"
    return f"${BIONAS_PUB_ENV} (unset), ../shared/bionas_pub from {Path.cwd()} and from the repository root"


def resolve_path(raw: str | Path, base_dir: Path, what: str) -> Path:
    """Expand ``{bionas_pub}`` and make a relative path relative to ``base_dir``."""
    text = str(raw)
    if text.startswith(BIONAS_PUB_TOKEN):
        root = find_bionas_pub_dir()
        if root is None:
            raise DataError(
                f"{what} needs the original BioNAS data folder (bionas_pub with simdata/ and motifs/), "
                f"which is missing; tried {bionas_pub_places()}; set {BIONAS_PUB_ENV}=/path/to/bionas_pub"
            )
        return root / text[len(BIONAS_PUB_TOKEN) :].lstrip("/\\")
    path = Path(text)
    return path if path.is_absolute() else base_dir / path


# ----------------------------------------------------------------------------------------
# Dataset
# ----------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Dataset:
    """Sequences, labels, splits and knowledge motifs of one dataset.

    ``codes`` is (N, L) uint8 (A0 C1 G2 T3 N4); ``labels`` is (N, T) uint8 with
    ``label_names``; ``splits`` maps a split name to sorted row indices: ``train``,
    ``validation``, ``test`` for fraction splits, or a single ``all`` for manifests with
    ``mode = "per_replicate"`` (then the training manifest draws each replicate's split,
    as the original BioNAS did). ``ground_truth`` (simulated data only) has one row per
    embedded instance: sequence, motif, start, end, strand. ``motif_sets`` are the motif
    groups knowledge K is scored against. Arrays are read-only; ``sha256`` hashes them.
    """

    name: str
    codes: np.ndarray
    labels: np.ndarray
    label_names: tuple[str, ...]
    splits: dict[str, np.ndarray]
    motif_sets: dict[str, tuple[Motif, ...]]
    manifest_sha256: str
    manifest_text: str = field(default="", repr=False)
    description: str = ""
    ground_truth: pd.DataFrame | None = field(default=None, repr=False)
    sha256: str = field(init=False)

    def __post_init__(self) -> None:
        for array in (self.codes, self.labels, *self.splits.values()):
            array.setflags(write=False)
        if self.codes.ndim != 2 or self.labels.shape != (len(self.codes), len(self.label_names)):
            raise DataError(
                f"dataset {self.name!r}: codes {self.codes.shape} and labels {self.labels.shape} "
                f"do not fit {len(self.label_names)} label names"
            )
        object.__setattr__(self, "sha256", _hash_arrays(self))

    @property
    def n_sequences(self) -> int:
        return int(self.codes.shape[0])

    @property
    def length(self) -> int:
        return int(self.codes.shape[1])

    def onehot(
        self, indices: np.ndarray | None = None, value: float = 1.0, dtype: Any = np.float32
    ) -> np.ndarray:
        """One-hot (n, L, 4) of the rows ``indices`` (all rows when None); N is all zero."""
        codes = self.codes if indices is None else self.codes[np.asarray(indices)]
        return _onehot(codes, value=value, dtype=dtype)

    def summary(self) -> dict[str, Any]:
        """Sizes, label balance, split sizes and hashes (what the CLI prints)."""
        return {
            "name": self.name,
            "sequences": self.n_sequences,
            "length": self.length,
            "labels": {n: float(self.labels[:, i].mean()) for i, n in enumerate(self.label_names)},
            "splits": {k: int(len(v)) for k, v in self.splits.items()},
            "instances": None if self.ground_truth is None else int(len(self.ground_truth)),
            "motif_sets": {k: [m.name for m in v] for k, v in self.motif_sets.items()},
            "sha256": self.sha256,
            "manifest_sha256": self.manifest_sha256,
        }

    def save(self, directory: str | Path) -> Path:
        """Write ``<directory>/<name>.npz`` and ``<name>.json`` atomically; returns the JSON path.

        Each file is written to a temporary file in the same folder and renamed, the
        JSON last, so a crash never leaves a half-written cache that :func:`load_dataset`
        would accept.
        """
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        arrays: dict[str, np.ndarray] = {"codes": self.codes, "labels": self.labels}
        for split, idx in self.splits.items():
            arrays[f"split__{split}"] = idx
        gt_motifs: list[str] = []
        if self.ground_truth is not None:
            gt = self.ground_truth
            motif_col = pd.Categorical(gt["motif"])
            gt_motifs = [str(c) for c in motif_col.categories]
            arrays["gt_sequence"] = gt["sequence"].to_numpy(np.int64)
            arrays["gt_motif"] = np.asarray(motif_col.codes, dtype=np.int64)
            arrays["gt_start"] = gt["start"].to_numpy(np.int64)
            arrays["gt_end"] = gt["end"].to_numpy(np.int64)
            arrays["gt_reverse"] = (gt["strand"].to_numpy() == "-").astype(np.uint8)
        meta = {
            "format": CACHE_FORMAT,
            "name": self.name,
            "description": self.description,
            "label_names": list(self.label_names),
            "splits": list(self.splits),
            "ground_truth_motifs": gt_motifs if self.ground_truth is not None else None,
            "motif_sets": {
                k: [{"name": m.name, "source": m.source, "pwm": m.pwm.tolist()} for m in v]
                for k, v in self.motif_sets.items()
            },
            "manifest_sha256": self.manifest_sha256,
            "manifest_text": self.manifest_text,
            "sha256": self.sha256,
        }
        _atomic_write(directory / f"{self.name}.npz", lambda f: np.savez(f, **arrays))
        json_path = directory / f"{self.name}.json"
        _atomic_write(json_path, lambda f: f.write(json.dumps(meta, indent=1).encode()))
        return json_path


def load_dataset(path: str | Path) -> Dataset:
    """Load a dataset saved by :meth:`Dataset.save` (give the ``.json`` or ``.npz`` path).

    The arrays are re-hashed; a mismatch with the recorded sha256 is a DataError.
    """
    json_path = Path(path).with_suffix(".json")
    npz_path = json_path.with_suffix(".npz")
    try:
        meta = json.loads(json_path.read_text(encoding="utf-8"))
        with np.load(npz_path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except FileNotFoundError as exc:
        raise DataError(
            f"dataset cache {exc.filename} does not exist; build it with 'bionas-bench data build'"
        ) from None
    except (OSError, ValueError) as exc:
        raise DataError(f"dataset cache {json_path} is unreadable ({exc}); delete it and rebuild") from exc
    if meta.get("format") != CACHE_FORMAT:
        raise DataError(f"dataset cache {json_path} has format {meta.get('format')}; rebuild it")
    ground_truth = None
    if meta["ground_truth_motifs"] is not None:
        ground_truth = _truth_frame(
            arrays["gt_sequence"],
            pd.Categorical.from_codes(arrays["gt_motif"], categories=meta["ground_truth_motifs"]),
            arrays["gt_start"],
            arrays["gt_end"],
            arrays["gt_reverse"].astype(bool),
        )
    dataset = Dataset(
        name=meta["name"],
        codes=arrays["codes"],
        labels=arrays["labels"],
        label_names=tuple(meta["label_names"]),
        splits={s: arrays[f"split__{s}"] for s in meta["splits"]},
        motif_sets={
            k: tuple(Motif(name=m["name"], pwm=np.array(m["pwm"]), source=m["source"]) for m in v)
            for k, v in meta["motif_sets"].items()
        },
        manifest_sha256=meta["manifest_sha256"],
        manifest_text=meta["manifest_text"],
        description=meta["description"],
        ground_truth=ground_truth,
    )
    if dataset.sha256 != meta["sha256"]:
        raise DataError(f"dataset cache {json_path} fails its sha256 check; delete it and rebuild")
    return dataset


def build_dataset(
    name_or_path: str | Path,
    *,
    cache_dir: str | Path | None = None,
    progress: Progress | None = None,
    force: bool = False,
) -> Dataset:
    """Build the dataset of a shipped manifest name or a manifest path.

    With ``cache_dir``, a cache saved from the same manifest text (same sha256) is
    loaded instead (unless ``force``, or a FASTA or motif file the manifest names changed
    size or modification time since), and a fresh build is saved there.
    """
    manifest = load_manifest("datasets", name_or_path)
    spec = parse_dataset_manifest(manifest)
    if cache_dir is not None:
        if Path(cache_dir).exists() and not Path(cache_dir).is_dir():
            raise DataError(f"dataset cache folder {cache_dir} is a file; give the path of a folder")
        cached = Path(cache_dir) / f"{spec.name}.json"
        if (
            not force
            and cached.is_file()
            and _cached_manifest_sha(cached) == manifest.sha256
            and _inputs_unchanged(spec, cached)
        ):
            return load_dataset(cached)
    dataset = build_from_spec(spec, progress=progress)
    if cache_dir is not None:
        dataset.save(cache_dir)
        stamps = _input_stamps(spec)
        if stamps:  # NAME.inputs.json beside the cache, for datasets read from files
            _atomic_write(_inputs_path(cached), lambda f: f.write(json.dumps(stamps).encode()))
    return dataset


def _inputs_path(cached: Path) -> Path:
    return cached.with_name(cached.stem + ".inputs.json")


def _input_stamps(spec: DatasetSpec) -> dict[str, list[int] | None]:
    """Size and modification time (ns) of each file a build reads besides the manifest
    (None: cannot be read here, e.g. the original data folder is absent)."""
    assert spec.manifest is not None
    base_dir = spec.manifest.path.parent
    raw = [m.path for m in spec.motifs.values() if m.path is not None]
    if spec.fasta is not None:
        raw += [spec.fasta.positives, spec.fasta.negatives]
    stamps: dict[str, list[int] | None] = {}
    for item in raw:
        try:
            stat = resolve_path(item, base_dir, "input").stat()
            stamps[str(item)] = [stat.st_size, stat.st_mtime_ns]
        except (OSError, DataError):
            stamps[str(item)] = None
    return stamps


def _inputs_unchanged(spec: DatasetSpec, cached: Path) -> bool:
    """No input file that can be read here differs from when the cache was built (a cache
    without the record, from before it was kept, counts as unchanged)."""
    try:
        recorded = json.loads(_inputs_path(cached).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return True
    now = _input_stamps(spec)
    return all(now[k] is None or recorded.get(k) in (None, now[k]) for k in now)


def build_from_spec(spec: DatasetSpec, progress: Progress | None = None) -> Dataset:
    """Build a dataset from a validated spec (see :func:`build_dataset`)."""
    step = progress or (lambda _stage: None)
    assert spec.manifest is not None
    base_dir = spec.manifest.path.parent
    step("motifs")
    motifs = load_spec_motifs(spec)
    sim_seq, split_seq = np.random.SeedSequence(spec.seed).spawn(2)
    if spec.type == "simulated":
        codes, labels, label_names, truth = _simulate(spec, motifs, np.random.default_rng(sim_seq), step)
    else:
        codes, labels, label_names = _read_fasta_pair(spec, base_dir, step)
        truth = None
    step("splits")
    splits = make_splits(spec.splits, len(codes), np.random.default_rng(split_seq))
    return Dataset(
        name=spec.name,
        codes=codes,
        labels=labels,
        label_names=label_names,
        splits=splits,
        motif_sets={k: tuple(motifs[m] for m in v) for k, v in spec.motif_sets.items()},
        manifest_sha256=spec.manifest.sha256,
        manifest_text=spec.manifest.text,
        description=spec.description,
        ground_truth=truth,
    )


def load_spec_motifs(spec: DatasetSpec) -> dict[str, Motif]:
    """The motifs of ``[motifs]``, each renamed to its manifest key."""
    assert spec.manifest is not None
    base_dir = spec.manifest.path.parent
    out: dict[str, Motif] = {}
    for key, motif_spec in spec.motifs.items():
        if motif_spec.path is not None:
            path = resolve_path(motif_spec.path, base_dir, f"dataset {spec.name!r} motif {key!r}")
            motif_spec = MotifSpec(motif_spec.source, motif_spec.keys, path, motif_spec.release)
        (motif,) = motif_spec.load()
        out[key] = Motif(name=key, pwm=motif.pwm, source=f"{motif.source}:{motif.name}")
    return out


def make_splits(spec: SplitSpec, n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Split ``n`` rows: a random permutation cut at the cumulative fractions (each
    split's indices sorted), or ``{"all": 0..n-1}`` for ``per_replicate``."""
    if spec.mode == PER_REPLICATE:
        return {"all": np.arange(n, dtype=np.int64)}
    perm = rng.permutation(n)
    fractions = np.array([f for _, f in spec.fractions])
    bounds = np.round(np.cumsum(fractions) * n).astype(np.int64)
    bounds[-1] = n
    pieces = np.split(perm, bounds[:-1])
    return {name: np.sort(p).astype(np.int64) for (name, _), p in zip(spec.fractions, pieces, strict=True)}


def list_datasets() -> list[tuple[str, str]]:
    """Shipped dataset manifests as (name, description)."""
    rows = []
    for name in available("datasets"):
        try:
            description = str(load_manifest("datasets", name).data.get("description", ""))
        except BionasError as exc:
            description = f"(unreadable: {exc})"
        rows.append((name, description))
    return rows


# ----------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------


def simulation_config(spec: DatasetSpec, motifs: dict[str, Motif]) -> SimulationConfig:
    """The simulation ``spec`` describes, with ``motifs`` (:func:`load_spec_motifs`), after
    its checks (counts, background, task, embedding ranges, that the motifs fit the
    sequences), a problem being a ManifestError naming the manifest. The checks need the
    motifs' lengths, so the manifest parser cannot make them; ``data show`` calls this so
    that it refuses what ``data build`` and ``train`` refuse, with the same message."""
    sim = spec.simulation
    assert sim is not None
    try:
        return SimulationConfig(
            length=sim.length,
            n_positive=sim.n_positive,
            n_negative=sim.n_negative,
            embeddings=tuple(
                Embedding(motifs[e.motif], e.min_count, e.max_count, e.mean, e.zero_prob) for e in sim.embed
            ),
            background=sim.background,
            task=sim.task,
            seed=spec.seed,
        )
    except DataError as exc:
        raise ManifestError(
            f"dataset manifest {spec.manifest.path if spec.manifest else spec.name}: {exc}"
        ) from exc


def _simulate(
    spec: DatasetSpec, motifs: dict[str, Motif], rng: np.random.Generator, step: Progress
) -> tuple[np.ndarray, np.ndarray, tuple[str, ...], pd.DataFrame]:
    result = simulate(simulation_config(spec, motifs), rng=rng, progress=step)
    return result.codes, result.labels, result.label_names, result.ground_truth


def _read_fasta_pair(
    spec: DatasetSpec, base_dir: Path, step: Progress
) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    fa = spec.fasta
    assert fa is not None
    what = f"dataset {spec.name!r}"
    step("positives")
    pos = read_fasta(resolve_path(fa.positives, base_dir, what), allow_mixed_lengths=fa.allow_mixed_lengths)
    step("negatives")
    neg = read_fasta(resolve_path(fa.negatives, base_dir, what), allow_mixed_lengths=fa.allow_mixed_lengths)
    width = max(pos.codes.shape[1], neg.codes.shape[1])
    if pos.codes.shape[1] != neg.codes.shape[1] and not fa.allow_mixed_lengths:
        raise DataError(
            f"{what}: positives {pos.path} are {pos.codes.shape[1]} bp but negatives {neg.path} are "
            f"{neg.codes.shape[1]} bp; use files of one length or set allow_mixed_lengths = true"
        )
    codes = np.full((len(pos) + len(neg), width), 4, dtype=np.uint8)
    codes[: len(pos), : pos.codes.shape[1]] = pos.codes
    codes[len(pos) :, : neg.codes.shape[1]] = neg.codes
    labels = np.zeros((len(codes), 1), dtype=np.uint8)
    labels[: len(pos)] = 1
    return codes, labels, (fa.label,)


def _truth_frame(
    sequence: np.ndarray, motif: pd.Categorical, start: np.ndarray, end: np.ndarray, reverse: np.ndarray
) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "sequence": sequence,
            "motif": motif,
            "start": start,
            "end": end,
            "strand": np.where(reverse, "-", "+"),
        }
    )


def _hash_arrays(ds: Dataset) -> str:
    """sha256 over names, dtypes, shapes and bytes of every array (and label names)."""
    h = hashlib.sha256()
    for name, array in _hashed_arrays(ds):
        array = np.ascontiguousarray(array)
        h.update(f"{name}|{array.dtype.str}|{array.shape}\n".encode())
        h.update(array.tobytes())
    h.update(json.dumps(list(ds.label_names)).encode())
    return h.hexdigest()


def _hashed_arrays(ds: Dataset) -> Iterator[tuple[str, np.ndarray]]:
    yield "codes", ds.codes
    yield "labels", ds.labels
    for split in sorted(ds.splits):
        yield f"split/{split}", np.asarray(ds.splits[split], dtype=np.int64)
    if ds.ground_truth is not None:
        gt = ds.ground_truth
        yield "gt/sequence", gt["sequence"].to_numpy(np.int64)
        motif = pd.Categorical(gt["motif"])
        yield "gt/motif", np.asarray(motif.codes, dtype=np.int64)
        yield "gt/motif_names", np.array([str(c) for c in motif.categories], dtype="U")
        yield "gt/start", gt["start"].to_numpy(np.int64)
        yield "gt/end", gt["end"].to_numpy(np.int64)
        yield "gt/strand", (gt["strand"].to_numpy() == "-").astype(np.uint8)


def _cached_manifest_sha(json_path: Path) -> str | None:
    try:
        return json.loads(json_path.read_text(encoding="utf-8")).get("manifest_sha256")
    except (OSError, ValueError):
        return None


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _atomic_write(target: Path, write: Callable[[Any], Any]) -> None:
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes it 0600; a cache is as shareable as any file
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
