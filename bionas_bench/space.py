"""Finite model spaces: layers of named choices and stable integer architecture ids.

An architecture is one choice per layer. Its id is the mixed-radix number of its
choice indices with layer 0 the most significant digit::

    id = sum_l index_l * prod(radix_{l+1} ... radix_{L-1})

so for ``bionas-conv1d`` (radices 6, 3, 4, 3) ``id = 36*i0 + 12*i1 + 3*i2 + i3``,
which is the original table's ``trial_id - 1``. Spaces are declared in
``data_manifests/spaces/*.toml``; this module only reads them.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bionas_bench.errors import ManifestError, SpaceError
from bionas_bench.manifests import Fields, Manifest, available, load_manifest

NAME_SEPARATOR = " / "


@dataclass(frozen=True)
class Choice:
    """One option of a layer: a readable name, the operation, and its parameters."""

    name: str
    op: str
    params: tuple[tuple[str, Any], ...] = ()

    @property
    def kwargs(self) -> dict[str, Any]:
        return dict(self.params)


@dataclass(frozen=True)
class Layer:
    """A searchable layer: its name and its ordered choices (order fixes the ids)."""

    name: str
    choices: tuple[Choice, ...]

    @property
    def choice_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.choices)

    def index(self, choice_name: str) -> int:
        try:
            return self.choice_names.index(choice_name)
        except ValueError:
            raise SpaceError(
                f"layer {self.name!r} has no choice {choice_name!r}; choices: {', '.join(self.choice_names)}"
            ) from None


@dataclass(frozen=True)
class ModelSpace:
    """A finite architecture space with mixed-radix ids (layer 0 outermost)."""

    name: str
    description: str
    layers: tuple[Layer, ...]
    manifest_sha256: str
    manifest_text: str

    # ------------------------------------------------------------------ shape
    @property
    def radices(self) -> tuple[int, ...]:
        return tuple(len(layer.choices) for layer in self.layers)

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    @property
    def size(self) -> int:
        return int(np.prod(self.radices, dtype=np.int64))

    def __len__(self) -> int:
        return self.size

    @functools.cached_property
    def strides(self) -> np.ndarray:
        """Place value of each layer's digit: ``id = choices @ strides``."""
        radices = np.array(self.radices, dtype=np.int64)
        return np.concatenate([np.cumprod(radices[::-1])[::-1][1:], [1]]).astype(np.int64)

    # ------------------------------------------------------------------ ids
    def check_ids(self, ids: Any) -> np.ndarray:
        """Return ``ids`` as an int64 array, or raise SpaceError naming the bad id."""
        arr = np.asarray(ids)
        if arr.dtype.kind not in "iu":
            if arr.dtype.kind == "f" and np.all(np.isfinite(arr)) and np.all(arr == np.round(arr)):
                arr = arr.astype(np.int64)
            else:
                raise SpaceError(
                    f"architecture ids must be integers, got dtype {arr.dtype} for space {self.name!r}"
                )
        arr = arr.astype(np.int64, copy=False)
        bad = (arr < 0) | (arr >= self.size)
        if np.any(bad):
            first = int(arr[bad].flat[0])
            raise SpaceError(
                f"architecture id {first} is out of range for space {self.name!r}; "
                f"valid ids are 0..{self.size - 1}"
            )
        return arr

    def encode(self, choices: Sequence[int] | np.ndarray) -> int | np.ndarray:
        """Choice indices ``(..., num_layers)`` -> architecture id(s)."""
        arr = np.asarray(choices)
        if arr.shape[-1:] != (self.num_layers,) or arr.dtype.kind not in "iu":
            raise SpaceError(
                f"expected integer choice indices with last axis {self.num_layers} for space "
                f"{self.name!r}, got shape {arr.shape} dtype {arr.dtype}"
            )
        radices = np.array(self.radices)
        bad = (arr < 0) | (arr >= radices)
        if np.any(bad):
            layer = int(np.argwhere(bad)[0][-1])
            raise SpaceError(
                f"choice index {int(arr[..., layer][bad[..., layer]].flat[0])} is out of range for "
                f"layer {layer} ({self.layers[layer].name!r}) of space {self.name!r}; "
                f"valid 0..{radices[layer] - 1}"
            )
        ids = arr.astype(np.int64) @ self.strides
        return int(ids) if np.ndim(ids) == 0 else ids

    def decode(self, ids: Any) -> tuple[int, ...] | np.ndarray:
        """Architecture id(s) -> choice indices; a scalar gives a tuple, an array ``(..., L)``."""
        arr = self.check_ids(ids)
        digits = (arr[..., None] // self.strides) % np.array(self.radices, dtype=np.int64)
        if arr.ndim == 0:
            return tuple(int(d) for d in digits)
        return digits

    def names(self, arch_id: int) -> tuple[str, ...]:
        """Readable choice names of one architecture, one per layer."""
        return tuple(
            layer.choices[i].name for layer, i in zip(self.layers, self.decode(int(arch_id)), strict=True)
        )

    def arch_name(self, arch_id: int) -> str:
        """One readable string, e.g. ``conv1d_f3_k14 / identity / sfc / dense_u10``."""
        return NAME_SEPARATOR.join(self.names(arch_id))

    def arch_names(self, ids: Iterable[int] | None = None) -> list[str]:
        """Readable names of many architectures (all of them by default)."""
        ids = range(self.size) if ids is None else ids
        return [self.arch_name(i) for i in ids]

    def id_of(self, names: str | Sequence[str]) -> int:
        """Readable name (string or per-layer names) -> architecture id."""
        parts = names.split(NAME_SEPARATOR.strip()) if isinstance(names, str) else list(names)
        parts = [p.strip() for p in parts]
        if len(parts) != self.num_layers:
            raise SpaceError(
                f"architecture {names!r} has {len(parts)} layer names but space {self.name!r} "
                f"has {self.num_layers} layers ({', '.join(l.name for l in self.layers)})"
            )
        return self.encode([layer.index(p) for layer, p in zip(self.layers, parts, strict=True)])

    def choice(self, arch_id: int, layer: int) -> Choice:
        return self.layers[layer].choices[self.decode(int(arch_id))[layer]]

    def enumerate(self) -> np.ndarray:
        """All architectures as a ``(size, num_layers)`` matrix of choice indices, row = id."""
        return self.decode(np.arange(self.size, dtype=np.int64))


# ---------------------------------------------------------------------- loading
def list_spaces() -> list[str]:
    """Names of the shipped spaces."""
    return available("spaces")


def get_space(name: str | Path) -> ModelSpace:
    """The space of a shipped name (e.g. ``"bionas-conv1d"``) or of a TOML path."""
    try:
        manifest = load_manifest("spaces", name)
    except ManifestError as exc:
        raise SpaceError(str(exc)) from None
    return _space_cached(manifest.path, manifest.text)


@functools.lru_cache(maxsize=32)
def _space_cached(path: Path, text: str) -> ModelSpace:
    from bionas_bench.manifests import parse_manifest

    return space_from_manifest(parse_manifest("spaces", text, path))


def space_from_manifest(manifest: Manifest) -> ModelSpace:
    where = f"space manifest {manifest.path}"
    root = Fields(manifest.data, where)
    meta = root.table("space")
    name = meta.get("name", str)
    description = meta.get("description", str, "")
    meta.finish()
    raw_layers = root.get("layers", list)
    root.finish()
    if not raw_layers:
        raise ManifestError(f"{where}: [[layers]] is empty; declare at least one layer")
    layers = tuple(_parse_layer(raw, f"{where} layer {i}") for i, raw in enumerate(raw_layers))
    names = [layer.name for layer in layers]
    if len(set(names)) != len(names):
        raise ManifestError(f"{where}: layer names must be unique, got {names}")
    return ModelSpace(
        name=name,
        description=description,
        layers=layers,
        manifest_sha256=manifest.sha256,
        manifest_text=manifest.text,
    )


def _parse_layer(raw: Any, where: str) -> Layer:
    fields = Fields(raw, where)
    name = fields.get("name", str)
    raw_choices = fields.get("choices", list)
    fields.finish()
    if not raw_choices:
        raise ManifestError(f"{where} ({name!r}) has no choices")
    choices = []
    for j, rc in enumerate(raw_choices):
        cf = Fields(rc, f"{where} ({name!r}) choice {j}")
        params = cf.get("params", dict, {})
        choices.append(Choice(name=cf.get("name", str), op=cf.get("op", str), params=_freeze(params)))
        cf.finish()
    cnames = [c.name for c in choices]
    if len(set(cnames)) != len(cnames):
        raise ManifestError(f"{where} ({name!r}): choice names must be unique, got {cnames}")
    return Layer(name=name, choices=tuple(choices))


def _freeze(params: dict[str, Any]) -> tuple[tuple[str, Any], ...]:
    return tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in params.items()))
