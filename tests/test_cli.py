"""The command line's start: fast help, and the package's public names."""

from __future__ import annotations

import subprocess
import sys

import pytest

import bionas_bench

HEAVY = ("torch", "pandas", "scipy", "zarr", "dask", "distributed", "matplotlib", "numba")


def test_help_loads_none_of_the_heavy_libraries():
    """`bionas-bench --help` and every command's parser import no heavy library: help is
    instant, and a Ctrl-C while the program starts meets main()'s handler."""
    script = (
        "import sys\n"
        "from bionas_bench.cli import build_parser\n"
        "build_parser()\n"
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_every_public_name_resolves():
    for name in bionas_bench.__all__:
        assert getattr(bionas_bench, name) is not None
    assert set(bionas_bench.__all__) <= set(dir(bionas_bench))


def test_help_refills_prose_and_keeps_commands_whole():
    """Prose written with line breaks for a wide terminal is refilled for a narrow one (no
    line of one word left dangling); an example command is never split (it could not be
    copied)."""
    from bionas_bench.cli import HelpFormatter

    text = (
        "Train every architecture of a space with the replicates\n"
        "of a manifest, and write the results.\n"
        "\n"
        "examples:\n"
        "  bionas-bench train --dataset myc-single --out runs/s.zarr --replicates 0-4 --scheduler none"
    )
    lines = HelpFormatter("prog", width=42)._fill_text(text, 40, "").splitlines()
    assert lines == [
        "Train every architecture of a space with",
        "the replicates of a manifest, and write",
        "the results.",
        "",
        "examples:",
        "  bionas-bench train --dataset myc-single --out runs/s.zarr --replicates 0-4 --scheduler none",
    ]
    option = "Spearman of per-architecture medians and --replicates"
    assert HelpFormatter("prog")._split_lines(option, 22) == [
        "Spearman of",
        "per-architecture",
        "medians and",
        "--replicates",
    ]


def test_outputs_and_options_a_run_would_refuse_are_refused_by_its_dry_run(tmp_path, capsys):
    """A dry run makes the run's checks: an output path under a file, and options of the
    run itself; the message is one line prefixed by the command as typed."""
    from bionas_bench.cli import main

    a_file = tmp_path / "f"
    a_file.write_text("kept")
    under = f"{a_file} is a file, not a folder; choose another"
    cases = [
        (["sweep", "demo", "--out", str(a_file / "sub"), "--dry-run"], "sweep", f"{under} --out"),
        (["regress", "record", "regress", "--out", str(a_file / "b.json")], "regress record", under),
        (["train", "--dataset", "myc-mini", "--out", str(a_file / "s.zarr"), "--dry-run"], "train", under),
        (["train", "--dataset", "myc-mini", "--out", str(tmp_path / "s.zarr"), "--dry-run", "--threads", "0"],
         "train", "--threads must be >= 1, got 0"),
    ]  # fmt: skip
    import torch

    if not torch.cuda.is_available():
        argv = ["train", "--dataset", "myc-mini", "--out", str(tmp_path / "s.zarr"), "--dry-run"]
        argv += ["--device", "cuda"]
        cases.append((argv, "train", "--device cuda was asked for but torch sees no CUDA GPU"))
    for argv, command, message in cases:
        assert main(argv) == 2, argv
        captured = capsys.readouterr()
        assert captured.err.startswith(f"bionas-bench {command}: error: "), captured.err
        assert captured.err.count("\n") == 1 and message in captured.err, captured.err
    assert sorted(tmp_path.iterdir()) == [a_file] and a_file.read_text() == "kept"


def test_an_output_inside_a_store_or_results_folder_is_refused(tmp_path, capsys):
    """Files written inside a Zarr store or a sweep's results folder would become part of
    it: refused before any work; the store or folder itself stays a valid --out."""
    from bionas_bench.cli import main

    store, results = tmp_path / "s.zarr", tmp_path / "results"
    for folder, marker in ((store, "zarr.json"), (results, "sweep.json")):
        folder.mkdir()
        (folder / marker).write_text("{}")
    in_store, in_results = f"inside the Zarr store {store}", f"inside the sweep results folder {results}"
    cases = [
        (["sweep", "demo", "--out", str(store / "res"), "--dry-run"], in_store),
        (["report", str(results), "--out", str(results / "deep" / "rep")], in_results),
        (["train", "--dataset", "myc-mini", "--out", str(store / "inner.zarr"), "--dry-run"], in_store),
    ]
    for argv, message in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and message in err and "choose a folder outside it" in err, err
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["results", "s.zarr", "sweep.json", "zarr.json"]


def test_an_unknown_argument_shows_the_usage_of_the_command_as_typed(capsys):
    """argparse's top-level parser would print the top-level usage for a stray argument of
    a sub-command; the sub-command's own usage is the one that helps."""
    import pytest

    from bionas_bench.cli import main

    for argv, command in [
        (["controllers", "list", "extra"], "controllers list"),
        (["store", "info", "--bogus"], "store info"),
    ]:
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        assert exit_info.value.code == 2
        err = capsys.readouterr().err
        assert (
            err.startswith(f"usage: bionas-bench {command} ")
            and f"bionas-bench {command}: error: unrecognized" in err
        )


@pytest.mark.parametrize(
    ("argv", "listed", "kind"),
    [([], ["demo", "train", "sweep", "regress"], "COMMAND"), (["store"], ["info", "compare"], "SUBCOMMAND")],
)
def test_a_missing_command_shows_the_commands(capsys, argv, listed, kind):
    """`bionas-bench` (or a group) alone: its help with the command list, then the error."""
    from bionas_bench.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"usage: bionas-bench {' '.join(argv)}".rstrip() + " ")
    assert all(f"\n    {name} " in err for name in listed), err
    assert err.rstrip().endswith(f"error: choose one of the {kind}s above")


@pytest.mark.parametrize(
    ("function", "kwargs"),
    [
        ("plan_farm", {"threads": 0}),
        ("plan_farm", {"archs": "0-999"}),
        ("plan_farm", {"replicates": "0-99"}),
        ("plan_sweep", {"scheduler": ""}),
    ],
)
def test_library_messages_name_the_option_of_the_python_argument(tmp_path, function, kwargs):
    """The README's rule for Python callers: a message's ``--some-option`` is the argument
    ``some_option=`` of the function called."""
    import inspect
    import re

    from bionas_bench import sweep
    from bionas_bench.errors import BionasError
    from bionas_bench.train import farm

    if function == "plan_farm":
        call, base = farm.plan_farm, {"space": "bionas-conv1d", "dataset": "myc-mini", "training": "smoke"}
    else:
        call, base = sweep.plan_sweep, {"config": "demo"}
    with pytest.raises(BionasError) as caught:
        call(**base, out=tmp_path / "out", **kwargs)
    options = re.findall(r"--([a-z][a-z-]*)", str(caught.value))
    assert options and options[0].replace("-", "_") in kwargs, str(caught.value)
    assert all(o.replace("-", "_") in inspect.signature(call).parameters for o in options), str(caught.value)


def _leaf_parsers(parser, path=()):
    """(command path, parser) of every command that takes no further sub-command."""
    import argparse

    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield path, parser
        return
    for name, child in subs[0].choices.items():
        yield from _leaf_parsers(child, (*path, name))


def test_every_command_group_help_shows_examples():
    """A group's --help (``bionas-bench regress --help``) shows examples of its actions too."""
    import argparse

    from bionas_bench.cli import build_parser

    root = build_parser()
    (commands,) = [a for a in root._actions if isinstance(a, argparse._SubParsersAction)]
    groups = {
        name: parser
        for name, parser in commands.choices.items()
        if any(isinstance(a, argparse._SubParsersAction) for a in parser._actions)
    }
    assert {"data", "store", "regress", "controllers"} <= set(groups)
    for name, parser in groups.items():
        text = parser.format_help()
        assert "example" in text and f"bionas-bench {name} " in text.split("example", 1)[1], name


def test_every_command_help_shows_an_example():
    """Each command's --help ends with at least one example to copy (its own command)."""
    from bionas_bench.cli import build_parser

    leaves = list(_leaf_parsers(build_parser()))
    assert len(leaves) >= 15
    for path, parser in leaves:
        text = parser.format_help()
        assert "example" in text and f"bionas-bench {' '.join(path)}" in text.split("example", 1)[1], path


@pytest.mark.parametrize(
    ("error", "shown"),
    [
        (MemoryError("Unable to allocate 29.8 GiB for an array with shape (1, 4000000000)"), "29.8 GiB"),
        (MemoryError(), "out of memory; choose smaller sizes"),
        ("torch", "(CUDA out of memory)"),
    ],
)
def test_running_out_of_memory_is_one_line_not_a_traceback(monkeypatch, capsys, error, shown):
    """A command that runs out of memory (a ppo LSTM of 10**9 units used to) says so in one
    line with the fix, exit 2; torch's GPU error, not a MemoryError, too."""
    from bionas_bench.cli import controllers, main

    if error == "torch":
        import torch

        error = torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB.\nGPU 0 has ...")

    def run_out(args):
        raise error

    monkeypatch.setattr(controllers, "run_list", run_out)
    assert main(["controllers", "list"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("bionas-bench controllers list: error: out of memory") and err.count("\n") == 1
    assert shown in err and "choose smaller sizes" in err
