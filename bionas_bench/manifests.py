"""Load and validate the TOML manifests that hold every setting of the benchmark.

Manifests live in ``data_manifests/<kind>/<name>.toml`` (kinds: spaces, datasets,
training, sweeps). A manifest is named either by its bare name (looked up in the
shipped folder) or by a path to a ``.toml`` file. Each loaded manifest keeps its
exact text and the sha256 of that text, so every artifact built from it can record
which settings it came from.
"""

from __future__ import annotations

import difflib
import hashlib
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bionas_bench.errors import ManifestError

KINDS = ("spaces", "datasets", "training", "sweeps")


def manifest_root() -> Path:
    """The folder holding the shipped manifests (repository checkout or wheel)."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "data_manifests", here.parent / "data_manifests"):
        if candidate.is_dir():
            return candidate
    raise ManifestError(
        f"cannot find the shipped data_manifests folder next to {here}; "
        "reinstall bionas_bench (pip install -e .) from a complete checkout"
    )


@dataclass(frozen=True)
class Manifest:
    """One parsed manifest: its kind, name, parsed content, exact text and hash."""

    kind: str
    name: str
    path: Path
    text: str
    data: dict[str, Any]

    @property
    def sha256(self) -> str:
        return sha256_text(self.text)


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def available(kind: str) -> list[str]:
    """Names of the shipped manifests of one kind, sorted."""
    _check_kind(kind)
    folder = manifest_root() / kind
    return sorted(p.stem for p in folder.glob("*.toml"))


def load_manifest(kind: str, name_or_path: str | Path) -> Manifest:
    """Load a manifest by shipped name or by path to a TOML file."""
    _check_kind(kind)
    if not isinstance(name_or_path, str | os.PathLike):
        raise ManifestError(
            f"a {_noun(kind)} manifest is given by a shipped name or the path of a .toml file, "
            f"got {name_or_path!r}"
        )
    path = _resolve(kind, name_or_path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ManifestError(f"cannot read {_noun(kind)} manifest {path}: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:  # TOML is UTF-8 text by definition
        raise ManifestError(
            f"{_noun(kind)} manifest {path} is not UTF-8 text (byte {exc.start} cannot be decoded); "
            "save it as UTF-8"
        ) from None
    return parse_manifest(kind, text, path)


def parse_manifest(kind: str, text: str, path: Path) -> Manifest:
    """Parse manifest text; a syntax error names the file, line and column."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ManifestError(f"{_noun(kind)} manifest {path} is not valid TOML: {exc}") from exc
    return Manifest(kind=kind, name=path.stem, path=path, text=text, data=data)


def _noun(kind: str) -> str:
    """The kind as messages name it: the manifest folder's name in the singular."""
    return kind if kind == "training" else kind.removesuffix("s")


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ManifestError(f"unknown manifest kind {kind!r}; expected one of {', '.join(KINDS)}")


def _resolve(kind: str, name_or_path: str | Path) -> Path:
    candidate = Path(name_or_path)
    if candidate.suffix == ".toml" or candidate.exists():
        if candidate.is_dir():
            raise ManifestError(
                f"{_noun(kind)} manifest {candidate} is a folder; pass a .toml file (or a shipped name)"
            )
        if not candidate.is_file():
            raise ManifestError(f"{_noun(kind)} manifest file {candidate} does not exist; check the path")
        return candidate
    shipped = manifest_root() / kind / f"{name_or_path}.toml"
    if shipped.is_file():
        return shipped
    names = ", ".join(available(kind)) or "(none)"
    raise ManifestError(
        f"unknown {_noun(kind)} manifest {str(name_or_path)!r}; "
        f"available: {names}; or pass a path to a .toml file"
    )


class Fields:
    """Typed access to one TOML table that names the manifest and key in every error.

    ``Fields(table, where).get("lr", float)`` returns the value or raises a
    ManifestError such as ``training manifest x.toml: [optimizer].lr must be a
    number, got 'fast'``. Unknown keys are reported by :meth:`finish`, so a typo
    in a manifest never passes silently.
    """

    def __init__(self, table: Any, where: str):
        if not isinstance(table, dict):
            raise ManifestError(f"{where} must be a table, got {type(table).__name__}")
        self._table = table
        self._where = where
        self._seen: set[str] = set()

    _MISSING = object()

    def get(self, key: str, kind: type | tuple[type, ...], default: Any = _MISSING) -> Any:
        self._seen.add(key)
        if key not in self._table:
            if default is Fields._MISSING:
                unread = [k for k in self._table if k not in self._seen and isinstance(k, str)]
                close = difflib.get_close_matches(key, unread, n=1, cutoff=0.75)
                typo = f" (it has {close[0]!r}: misspelt?)" if close else ""
                raise ManifestError(f"{self._where}: missing required key {key!r}{typo}")
            return default
        value = self._table[key]
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if float in kinds and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        ok = isinstance(value, kinds) and not (isinstance(value, bool) and bool not in kinds)
        if not ok:
            names = " or ".join(k.__name__ for k in kinds)
            raise ManifestError(f"{self._where}: {key!r} must be {names}, got {value!r}")
        return value

    def table(self, key: str, default: Any = _MISSING) -> Fields:
        value = self.get(key, dict, default)
        return Fields(value, f"{self._where} [{key}]")

    def finish(self) -> None:
        unknown = sorted(set(self._table) - self._seen)
        if unknown:
            raise ManifestError(
                f"{self._where}: unknown key(s) {', '.join(map(repr, unknown))}; "
                f"known keys: {', '.join(sorted(self._seen))}"
            )
