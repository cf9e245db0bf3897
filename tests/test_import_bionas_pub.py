"""Importing the original BioNAS table: mapping, provenance, gold standard, atomicity, CLI."""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import re
import shutil
import socket
from pathlib import Path

import numpy as np
import pytest

from bionas_bench import BootstrapOracle, cli
from bionas_bench.errors import StoreError
from bionas_bench.importers import FAILED_LOSS, import_bionas_pub
from bionas_bench.store import Store


@pytest.fixture(scope="module")
def pub_store(bionas_pub_store_path: Path) -> Store:
    return Store.open(bionas_pub_store_path)


def test_imported_store_shape_and_provenance(pub_store: Store) -> None:
    pub_store.validate()
    assert pub_store.num_archs == 216 and pub_store.num_replicates == 20
    assert pub_store.done.all()
    assert pub_store.metric_names == ["val_loss", "accuracy"] and pub_store.knowledge_sets == ["myc"]
    np.testing.assert_array_equal(pub_store.failed, pub_store.metric("val_loss") > FAILED_LOSS)
    assert 0.15 < pub_store.failed.mean() < 0.35  # about a quarter failed
    prov = pub_store.attrs["provenance"]
    assert prov["source"] == "import-bionas-pub"
    assert prov["original_repository"] == "zj-zhang/BioNAS-pub"
    assert "GPL-3" in prov["license"]
    assert len(prov["csv_sha256"]) == 20 and all(len(h) == 64 for h in prov["csv_sha256"].values())
    settings = pub_store.attrs["knowledge"]["settings"]
    assert settings["includes_filter_term"] is True and settings["filter_term"] == pytest.approx(0.03)


def test_first_row_values(pub_store: Store, bionas_pub_dir: Path) -> None:
    """tmp_1 row 1 is trial 1: [acc, knowledge, loss] = [0.493, 0.966..., 0.692...]."""
    first = (bionas_pub_dir / "mock_black_box/tmp_1/train_history.csv").read_text().splitlines()[0]
    acc, know, loss = (float(x) for x in first.split('"')[1].strip("[]").split(","))
    assert pub_store.metric("accuracy")[0, 0] == acc
    assert pub_store.knowledge("myc")[0, 0] == know
    assert pub_store.metric("val_loss")[0, 0] == loss


def test_gold_standard_matches_the_paper(pub_store: Store) -> None:
    gold = BootstrapOracle(pub_store, lam=1.0).gold_standard()
    best_loss = int(gold["loss"].idxmin())
    best_knowledge = int(gold["knowledge"].idxmin())
    assert best_loss == 46 and gold.loc[46, "name"] == "conv1d_f3_k14 / identity / sfc / dense_u10"
    assert best_knowledge == 93 and gold.loc[93, "name"] == "conv1d_f3_k20 / maxpool / sfc / dense_u3"
    assert gold.loc[46, "loss_rank"] == 1.0 and gold.loc[93, "knowledge_rank"] == 1.0
    assert (gold["n_replicates"] == 20).all()


def test_refuses_existing_output(bionas_pub_dir: Path, bionas_pub_store_path: Path) -> None:
    with pytest.raises(StoreError, match="already exists"):
        import_bionas_pub(bionas_pub_dir, bionas_pub_store_path)


def _copy_table(bionas_pub_dir: Path, dest: Path) -> Path:
    shutil.copytree(bionas_pub_dir / "mock_black_box", dest / "mock_black_box")
    return dest


def test_layer_mismatch_fails_loudly_and_leaves_nothing(bionas_pub_dir: Path, tmp_path: Path) -> None:
    src = _copy_table(bionas_pub_dir, tmp_path / "pub")
    csv = src / "mock_black_box/tmp_3/train_history.csv"
    lines = csv.read_text().splitlines()
    lines[46] = lines[46].replace("'kernel_size': 14", "'kernel_size': 20", 1)  # trial 47 = arch 46
    csv.write_text("\n".join(lines) + "\n")
    out = tmp_path / "out" / "s.zarr"
    with pytest.raises(StoreError, match="tmp_3.*line 47.*architecture 46.*conv1d_f3_k14"):
        import_bionas_pub(src, out)
    assert not out.exists()
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_interrupted_write_leaves_nothing(
    bionas_pub_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def interrupted(self: Store, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(Store, "write_block", interrupted)
    out = tmp_path / "out" / "s.zarr"
    with pytest.raises(KeyboardInterrupt):
        import_bionas_pub(bionas_pub_dir, out)
    assert list((tmp_path / "out").iterdir()) == []  # neither the store nor its temporary folder


def test_missing_replicate_and_bad_dir(bionas_pub_dir: Path, tmp_path: Path) -> None:
    src = _copy_table(bionas_pub_dir, tmp_path / "pub")
    shutil.rmtree(src / "mock_black_box/tmp_20")
    with pytest.raises(StoreError, match="tmp_20"):
        import_bionas_pub(src, tmp_path / "s.zarr")


def test_a_missing_or_wrong_dir_is_named(tmp_path: Path) -> None:
    """A folder that does not exist is called that (a relative one with the folder it was
    looked up from); an existing folder without the table says what it should hold."""
    with pytest.raises(StoreError, match="nowhere is not a folder; point DIR at the shared bionas_pub"):
        import_bionas_pub(tmp_path / "nowhere", tmp_path / "s.zarr")
    (tmp_path / "empty").mkdir()
    with pytest.raises(StoreError, match="empty holds no original BioNAS table"):
        import_bionas_pub(tmp_path / "empty", tmp_path / "s.zarr")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty"]


def test_cli_import_and_info(
    bionas_pub_dir: Path, bionas_pub_store_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "cli.zarr"
    shutil.copytree(bionas_pub_store_path, out)
    assert cli.main(["store", "import-bionas-pub", str(bionas_pub_dir), "--out", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err
    table = str(bionas_pub_dir / "mock_black_box")
    assert cli.main(["store", "import-bionas-pub", table, "--out", str(out), "--overwrite"]) == 0
    text = capsys.readouterr().out
    assert "4,320/4,320 trainings" in text and "conv1d_f3_k14 / identity / sfc / dense_u10" in text
    assert not [p for p in tmp_path.iterdir() if p.name != "cli.zarr"]  # old copy and temp removed
    folder = tmp_path / "not-a-store"
    folder.mkdir()
    (folder / "notes.txt").write_text("precious")
    assert cli.main(["store", "import-bionas-pub", table, "--out", str(folder), "--overwrite"]) == 2
    assert "is not a bionas_bench store" in capsys.readouterr().err
    assert [p.name for p in folder.iterdir()] == ["notes.txt"]
    folder.joinpath("notes.txt").unlink()
    folder.rmdir()
    assert cli.main(["store", "info", str(out), "--lam", "0.1"]) == 0
    info = capsys.readouterr().out
    assert "best by median knowledge (myc):\n      93" in info


@pytest.mark.parametrize(
    "metrics", ["[0.5, nan, 0.69]", "[0.5, 0.97]", "[0.5, 'x', 0.69]", "0.5", "[1e999, 1, 1]"]
)
def test_a_metric_list_that_is_not_three_numbers_is_named(
    bionas_pub_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], metrics: str
) -> None:
    """``nan`` in a metric list gave the parser's 'malformed node or string on line 1:
    <ast.Name object at 0x...>'; now the file, line and the form it must take."""
    src = _copy_table(bionas_pub_dir, tmp_path / "pub")
    csv = src / "mock_black_box/tmp_2/train_history.csv"
    lines = csv.read_text().splitlines()
    lines[4] = re.sub(r'"\[[^\]]*\]"', f'"{metrics}"', lines[4], count=1)
    csv.write_text("\n".join(lines) + "\n")
    out = tmp_path / "out" / "s.zarr"
    assert cli.main(["store", "import-bionas-pub", str(src), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    expected = (
        f"{csv} line 5: the metric list {metrics!r} must be three finite numbers [accuracy, knowledge, loss] "
        "like [0.5, 0.97, 0.69]\n"
    )
    assert err == f"bionas-bench store import-bionas-pub: error: {expected}"
    assert not (tmp_path / "out").exists()  # the table is read before anything is written


def test_a_table_file_that_is_not_text_is_named(bionas_pub_dir: Path, tmp_path: Path) -> None:
    """A binary train_history.csv raised UnicodeDecodeError with a traceback."""
    src = _copy_table(bionas_pub_dir, tmp_path / "pub")
    csv = src / "mock_black_box/tmp_3/train_history.csv"
    csv.write_bytes(b"\xff\xfe" + csv.read_bytes())
    with pytest.raises(
        StoreError, match=f"{re.escape(str(csv))} is not UTF-8 text \\(byte 0 cannot be decoded\\)"
    ):
        import_bionas_pub(src, tmp_path / "s.zarr")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pub"]


def test_an_interrupt_while_zarr_still_writes_leaves_no_temporary_folder(
    bionas_pub_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C stops the main thread's wait for zarr's I/O thread, not the writes in flight
    there: the temporary folder, removed at once, came back with the chunks written after
    it (2 of 8 interrupted imports). Here a chunk write is still in flight at the interrupt."""
    from zarr.core.sync import _get_loop

    late: list[concurrent.futures.Future] = []

    def interrupted(self: Store, **kwargs: object) -> None:
        array = self._group["metrics/val_loss"]

        async def write_late() -> None:
            await asyncio.sleep(0.5)
            await array.async_array.setitem((0, slice(None)), np.ones(20))

        late.append(asyncio.run_coroutine_threadsafe(write_late(), _get_loop()))
        raise KeyboardInterrupt

    monkeypatch.setattr(Store, "write_block", interrupted)
    out = tmp_path / "out" / "s.zarr"
    with pytest.raises(KeyboardInterrupt):
        import_bionas_pub(bionas_pub_dir, out)
    late[0].result(timeout=30)  # the write has happened (or failed) by now
    assert list((tmp_path / "out").iterdir()) == []


def test_an_import_removes_what_a_killed_import_left(bionas_pub_dir: Path, tmp_path: Path) -> None:
    """A killed import (SIGKILL) leaves its temporary folder and lock; the next import to the
    same store removes them, and nothing of another store's or the user's."""
    stale = tmp_path / ".imp.zarr.k1lled_x.tmp"
    (stale / "store.zarr" / "metrics").mkdir(parents=True)
    (tmp_path / ".imp.zarr.lock").write_text(f"999999999 {socket.gethostname()}\n")  # no such process
    keep = [".imp.zarr.b.abcdefgh.tmp", "imp.zarr.tmp", "notes.txt"]  # another store's, the user's
    (tmp_path / keep[0]).mkdir()
    (tmp_path / keep[1]).mkdir()
    (tmp_path / keep[2]).write_text("precious")
    import_bionas_pub(bionas_pub_dir, tmp_path / "imp.zarr")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*keep, "imp.zarr"])


def test_a_second_import_to_the_same_store_is_refused(bionas_pub_dir: Path, tmp_path: Path) -> None:
    """While one import holds the lock, its temporary folder is not stale: a second import
    to the same store is refused, and touches nothing."""
    lock = tmp_path / ".imp.zarr.lock"
    lock.write_text(f"{os.getpid()} {socket.gethostname()}\n")  # a live process
    (tmp_path / ".imp.zarr.abcdefgh.tmp").mkdir()
    message = f"another import is writing {tmp_path / 'imp.zarr'} \\(process {os.getpid()} .*\\); wait for it"
    with pytest.raises(StoreError, match=message):
        import_bionas_pub(bionas_pub_dir, tmp_path / "imp.zarr")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".imp.zarr.abcdefgh.tmp", ".imp.zarr.lock"]
