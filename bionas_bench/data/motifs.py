"""Position weight matrices (motifs) and where they come from.

A :class:`Motif` is a named ``(length, 4)`` matrix of base probabilities in A, C, G, T
order, each row summing to 1. Sources: the ENCODE motif text format used by the
original BioNAS data, JASPAR / MEME files through Biopython, and the JASPAR database
shipped with pyjaspar (offline).
"""

from __future__ import annotations

import difflib
import functools
import io
import re
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import Bio.motifs
import numpy as np

from bionas_bench.data.files import read_bytes
from bionas_bench.errors import DataError, ManifestError
from bionas_bench.manifests import Fields

BASES = "ACGT"


@dataclass(frozen=True, eq=False)
class Motif:
    """A named position weight matrix with base order A, C, G, T."""

    name: str
    pwm: np.ndarray
    source: str = ""

    def __post_init__(self) -> None:
        pwm = np.array(self.pwm, dtype=np.float64)  # a private copy, made read-only below
        if pwm.ndim != 2 or pwm.shape[1] != 4 or pwm.shape[0] == 0:
            raise DataError(f"motif {self.name!r} must be a (length, 4) matrix, got shape {pwm.shape}")
        if np.any(pwm < 0) or not np.all(np.isfinite(pwm)):
            raise DataError(f"motif {self.name!r} has negative or non-finite probabilities")
        sums = pwm.sum(axis=1, keepdims=True)
        if np.any(sums <= 0):
            raise DataError(f"motif {self.name!r} has an all-zero position; every row needs mass")
        # Rows already summing to 1 (to rounding) are kept as given, so that rebuilding a
        # motif from its own matrix (e.g. from a dataset cache) is exact.
        if not np.allclose(sums, 1.0, rtol=0.0, atol=1e-12):
            pwm = pwm / sums
        pwm.setflags(write=False)
        object.__setattr__(self, "pwm", pwm)

    @property
    def length(self) -> int:
        return int(self.pwm.shape[0])

    @property
    def consensus(self) -> str:
        """The most probable base at each position (ties go to the first of A, C, G, T)."""
        return "".join(BASES[i] for i in np.argmax(self.pwm, axis=1))

    def reverse_complement(self) -> Motif:
        """The same motif read on the opposite strand (rows reversed, A<->T and C<->G)."""
        return Motif(name=self.name, pwm=self.pwm[::-1, ::-1].copy(), source=self.source)

    def __repr__(self) -> str:
        return (
            f"Motif(name={self.name!r}, length={self.length}, "
            f"consensus={self.consensus!r}, source={self.source!r})"
        )


# ----------------------------------------------------------------------------------------
# Sources
# ----------------------------------------------------------------------------------------

SOURCES = ("jaspar", "encode", "jaspar_file", "meme_file")
"""Where motifs come from: the pyjaspar database, or a file in one of three formats."""

DEFAULT_JASPAR_RELEASE = "JASPAR2024"
"""The pinned JASPAR release: matrices must not change under a dataset when pyjaspar
gains a newer release, so manifests name the release and this is the default."""

_MATRIX_ID = re.compile(r"^MA\d{4}(\.\d+)?$")


@dataclass(frozen=True)
class MotifSpec:
    """Where to find one or more motifs, as written in a manifest table.

    ``source`` is one of :data:`SOURCES`. ``keys`` are JASPAR matrix ids (``MA0147.3``;
    without a version the latest in the release) or motif names. ``path`` is the motif
    file for ``encode`` / ``jaspar_file`` / ``meme_file``. ``release`` pins the
    pyjaspar database for ``jaspar``. ``rename`` optionally gives the loaded motifs
    new names (one per key), so e.g. JASPAR ``MA0147.3`` can be called ``MYC``.
    """

    source: str
    keys: tuple[str, ...]
    path: Path | None = None
    release: str = DEFAULT_JASPAR_RELEASE
    rename: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise DataError(f"unknown motif source {self.source!r}; use one of {', '.join(SOURCES)}")
        if not self.keys:
            raise DataError(f"motif source {self.source!r} needs at least one id or name")
        if self.source != "jaspar" and self.path is None:
            raise DataError(f"motif source {self.source!r} needs a 'path' to the motif file")
        if self.rename is not None and len(self.rename) != len(self.keys):
            raise DataError(f"motif rename {list(self.rename)} must give one name per key {list(self.keys)}")

    @classmethod
    def from_table(cls, table: Any, where: str, base_dir: Path | None = None) -> MotifSpec:
        """Build a spec from a manifest table with keys ``source``, ``id``/``ids`` or
        ``name``/``names``, ``path`` and ``release``; unknown keys are rejected.

        A relative ``path`` is taken relative to ``base_dir`` (the manifest's folder).
        """
        fields = Fields(table, where)
        source = fields.get("source", str)
        keys: list[str] = []
        for single, plural in (("id", "ids"), ("name", "names")):
            value = fields.get(single, str, None)
            if value is not None:
                keys.append(value)
            keys.extend(_string_list(fields.get(plural, list, []), f"{where}: {plural!r}"))
        raw_path = fields.get("path", str, None)
        release = fields.get("release", str, DEFAULT_JASPAR_RELEASE)
        fields.finish()
        if not keys:
            raise ManifestError(f"{where}: give the motif as 'id' / 'ids' or 'name' / 'names'")
        path = None
        if raw_path is not None:
            path = Path(raw_path)
            if base_dir is not None and not path.is_absolute():
                path = base_dir / path
        try:
            return cls(source=source, keys=tuple(keys), path=path, release=release)
        except DataError as exc:
            raise ManifestError(f"{where}: {exc}") from exc

    def load(self) -> tuple[Motif, ...]:
        """Load the motifs this spec names, in the order of ``keys``."""
        motifs = load_motifs(self.source, self.keys, path=self.path, release=self.release)
        if self.rename is None:
            return motifs
        return tuple(
            Motif(name=new, pwm=m.pwm, source=m.source) for new, m in zip(self.rename, motifs, strict=True)
        )


def load_motifs(
    source: str,
    names: Iterable[str],
    *,
    path: str | Path | None = None,
    release: str = DEFAULT_JASPAR_RELEASE,
) -> tuple[Motif, ...]:
    """Load motifs by id or name from one source.

    ``source="jaspar"`` reads the JASPAR database shipped with pyjaspar (offline) at
    ``release``; the other sources read ``path`` (plain or ``.gz``). An unknown name
    raises a :class:`DataError` that names it and lists close matches.
    """
    keys = [names] if isinstance(names, str) else list(names)
    if source == "jaspar":
        return tuple(jaspar_motif(key, release=release) for key in keys)
    if source not in SOURCES:
        raise DataError(f"unknown motif source {source!r}; use one of {', '.join(SOURCES)}")
    if path is None:
        raise DataError(f"motif source {source!r} needs a path to the motif file")
    table = read_motif_file(path, source)
    return tuple(_pick(table, key, f"motif file {path}") for key in keys)


def read_motif_file(path: str | Path, source: str) -> dict[str, Motif]:
    """All motifs of one file, keyed by name (JASPAR files also by matrix id)."""
    path = Path(path)
    text = _read_text(path)
    if source == "encode":
        motifs = parse_encode_motifs(text, str(path))
    elif source in ("jaspar_file", "meme_file"):
        motifs = _parse_with_biopython(text, path, source)
    else:
        raise DataError(f"{source!r} is not a motif file format; use encode, jaspar_file or meme_file")
    if not motifs:
        raise DataError(f"motif file {path} holds no motifs; check that it is in {source} format")
    return motifs


def parse_encode_motifs(text: str, where: str = "<text>") -> dict[str, Motif]:
    """Parse the ENCODE motif text format (Kheradpour & Kellis).

    Each motif starts with ``>NAME`` (anything after the first tab or space is a
    description), followed by one row per position: an IUPAC letter and four
    probabilities for A, C, G, T. Blank lines are ignored.
    """
    motifs: dict[str, Motif] = {}
    name: str | None = None
    rows: list[list[float]] = []

    def close(line_no: int) -> None:
        if name is None:
            return
        if not rows:
            raise DataError(f"{where}: motif {name!r} (ending at line {line_no}) has no rows")
        if name in motifs:
            raise DataError(f"{where}: motif name {name!r} appears twice; names must be unique")
        motifs[name] = Motif(name=name, pwm=np.array(rows), source=f"encode:{Path(where).name}")

    for line_no, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        if line.startswith(">"):
            close(line_no)
            header = line[1:].split(maxsplit=1)
            if not header:
                raise DataError(f"{where} line {line_no}: a '>' header without a motif name")
            name, rows = header[0], []
            continue
        if name is None:
            raise DataError(f"{where} line {line_no}: matrix row before the first '>NAME' header")
        rows.append(_encode_row(line, where, line_no))
    close(line_no=len(text.splitlines()))
    return motifs


def _encode_row(line: str, where: str, line_no: int) -> list[float]:
    parts = line.split()
    if len(parts) != 5:
        raise DataError(f"{where} line {line_no}: expected '<IUPAC> pA pC pG pT', got {line!r}")
    try:
        return [float(p) for p in parts[1:]]
    except ValueError:
        raise DataError(f"{where} line {line_no}: probabilities must be numbers, got {line!r}") from None


def _parse_with_biopython(text: str, path: Path, source: str) -> dict[str, Motif]:
    formats = ("jaspar",) if source == "jaspar_file" else ("minimal", "meme")
    errors = []
    for fmt in formats:
        try:
            parsed = list(Bio.motifs.parse(io.StringIO(text), fmt))
        except Exception as exc:  # Biopython raises assorted types on bad input
            errors.append(f"{fmt}: {exc}")
            continue
        if parsed:
            return _from_biopython(parsed, f"{source}:{path.name}")
    detail = "; ".join(errors) or "no motifs found"
    raise DataError(f"cannot parse motif file {path} as {source} ({detail}); check the file format")


def _from_biopython(parsed: list[Any], source: str) -> dict[str, Motif]:
    table: dict[str, Motif] = {}
    for bm in parsed:
        name = str(bm.name or getattr(bm, "matrix_id", "") or f"motif{len(table) + 1}")
        motif = Motif(name=name, pwm=_pwm_of(bm), source=source)
        table.setdefault(name, motif)
        matrix_id = getattr(bm, "matrix_id", None)
        if matrix_id:
            table.setdefault(str(matrix_id), motif)
    return table


def _pwm_of(bm: Any) -> np.ndarray:
    """The (length, 4) matrix of a Biopython motif (counts or frequencies)."""
    return np.array([[float(bm.counts[b][i]) for b in BASES] for i in range(bm.length)])


# ----------------------------------------------------------------------------------------
# JASPAR database shipped with pyjaspar
# ----------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=4)
def _jaspar_db(release: str) -> Any:
    from pyjaspar import jaspardb

    probe = jaspardb.__new__(jaspardb)
    releases = list(jaspardb.get_releases(probe))
    if release not in releases:
        raise DataError(f"unknown JASPAR release {release!r}; pyjaspar ships {', '.join(releases)}")
    return jaspardb(release=release)


def jaspar_motif(key: str, release: str = DEFAULT_JASPAR_RELEASE) -> Motif:
    """One matrix from the pyjaspar database by matrix id (``MA0147.3``) or TF name.

    A name must identify a single matrix (CORE collection, latest version); when it
    names several (e.g. ``CTCF``) the error lists their ids so a manifest can pick one.
    """
    db = _jaspar_db(release)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if _MATRIX_ID.match(key):
            found = [db.fetch_motif_by_id(key)]
            found = [m for m in found if m is not None]
        else:
            found = [m for m in db.fetch_motifs_by_name(key) or [] if m.name.upper() == key.upper()]
    if not found:
        candidates = _jaspar_keys(release)
        close = difflib.get_close_matches(key, candidates, n=5, cutoff=0.6)
        if not close:
            close = [c for c in candidates if c.upper().startswith(key.upper()[:3])][:5]
        hint = f"close matches: {', '.join(close)}" if close else "no close matches"
        raise DataError(f"unknown JASPAR motif {key!r} in {release}; {hint}")
    if len(found) > 1:
        ids = ", ".join(f"{m.matrix_id} ({m.name}, {m.length} bp)" for m in found)
        raise DataError(f"JASPAR name {key!r} matches several matrices in {release}: {ids}; give one id")
    bm = found[0]
    return Motif(name=str(bm.name), pwm=_pwm_of(bm), source=f"{release}:{bm.matrix_id}")


@functools.lru_cache(maxsize=4)
def _jaspar_keys(release: str) -> tuple[str, ...]:
    rows = _jaspar_db(release).conn.execute("select BASE_ID, VERSION, NAME from MATRIX").fetchall()
    names = {str(name) for _, _, name in rows}
    ids = {f"{base}.{version}" for base, version, _ in rows}
    return tuple(sorted(names | ids))


# ----------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------


def _pick(table: dict[str, Motif], key: str, where: str) -> Motif:
    if key in table:
        return table[key]
    close = difflib.get_close_matches(key, list(table), n=5, cutoff=0.6)
    hint = f"close matches: {', '.join(close)}" if close else f"{len(table)} motifs available"
    raise DataError(f"unknown motif {key!r} in {where}; {hint}")


def _read_text(path: Path) -> str:
    """Read a plain or gzip-compressed motif text file."""
    raw = read_bytes(path, "motif file")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise DataError(f"{path} is not UTF-8 text; expected a text (or .gz) file") from None


def _string_list(value: list[Any], where: str) -> list[str]:
    if not all(isinstance(v, str) for v in value):
        raise ManifestError(f"{where} must be a list of strings, got {value!r}")
    return list(value)
