"""A third-party controller installed for real through the ``bionas_bench.controllers`` group.

The package is built from the two code blocks of the README's "Adding a controller"
section (so the documented example is the tested one), installed with pip into a
temporary target directory (no network: ``--no-deps --no-build-isolation`` with the
setuptools of this environment), and found through ``importlib.metadata`` entry points
once that directory is on ``sys.path``.
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import bionas_bench as bb
from bionas_bench.cli import main
from bionas_bench.controllers.conformance import CHECKS, check_controller
from bionas_bench.errors import ControllerError

README = Path(__file__).resolve().parent.parent / "README.md"


def readme_block(first_line: str) -> str:
    """The fenced code block of the README whose first line is ``first_line``."""
    pattern = re.compile(r"```\w*\n(" + re.escape(first_line) + r"\n.*?)```", re.DOTALL)
    match = pattern.search(README.read_text(encoding="utf-8"))
    assert match, f"README.md has no code block starting with {first_line!r}"
    return match.group(1)


def _forget_plugin_modules() -> None:
    for name in [m for m in sys.modules if m == "my_controllers" or m.startswith("my_controllers.")]:
        del sys.modules[name]


@pytest.fixture(scope="module")
def plugin_target(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The README's example package, pip-installed into a fresh target directory."""
    if importlib.util.find_spec("setuptools") is None:
        pytest.skip("setuptools is not installed; pip cannot build the plugin without the registry")
    package = tmp_path_factory.mktemp("my-controllers")
    (package / "my_controllers").mkdir()
    (package / "my_controllers" / "__init__.py").write_text("")
    (package / "my_controllers" / "greedy.py").write_text(readme_block("# my_controllers/greedy.py"))
    (package / "pyproject.toml").write_text(readme_block("# pyproject.toml"))
    target = tmp_path_factory.mktemp("site")
    command = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation"]
    command += ["--no-index", "--disable-pip-version-check", "--target", str(target), str(package)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, f"pip install failed:\n{done.stdout}\n{done.stderr}"
    assert list(target.glob("my_controllers-0.1.0.dist-info/entry_points.txt"))
    return target


@pytest.fixture
def installed(plugin_target: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.syspath_prepend(str(plugin_target))
    yield plugin_target
    _forget_plugin_modules()


def test_the_plugin_is_listed_created_and_documented(installed: Path, capsys: pytest.CaptureFixture) -> None:
    assert "layer_greedy" in bb.controllers.list()
    cls = bb.controllers.get("layer_greedy")
    assert cls.__module__ == "my_controllers.greedy"
    assert Path(sys.modules["my_controllers"].__file__).is_relative_to(installed)
    space = bb.get_space("bionas-conv1d")
    ctrl = bb.controllers.create("layer_greedy", space, seed=0, epsilon=0.1)
    assert ctrl.params.epsilon == 0.1
    ids = ctrl.ask(5)
    ctrl.tell(ids, -np.arange(5.0))
    assert 0 <= ctrl.recommend() < space.size
    with pytest.raises(ControllerError, match="epsilon must be in"):
        bb.controllers.create("layer_greedy", space, epsilon=2.0)
    assert main(["controllers", "list"]) == 0
    assert "layer_greedy" in capsys.readouterr().out
    assert main(["controllers", "show", "layer_greedy"]) == 0
    shown = capsys.readouterr().out
    assert "plugin: my_controllers.greedy.LayerGreedy" in shown and "epsilon" in shown


@pytest.mark.parametrize("check", list(CHECKS))
def test_the_plugin_passes_the_conformance_suite(installed: Path, check: str) -> None:
    assert check_controller("layer_greedy", checks=[check]) == [check]


def test_the_plugin_is_gone_once_its_directory_leaves_sys_path(plugin_target: Path) -> None:
    assert "layer_greedy" not in bb.controllers.list()
    with pytest.raises(ControllerError, match="unknown controller 'layer_greedy'; available:"):
        bb.controllers.create("layer_greedy", bb.get_space("bionas-conv1d"))


def test_an_entry_point_that_is_not_a_controller_is_rejected(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """A hand-written distribution whose entry point names a plain function."""
    (tmp_path / "not_a_controller.py").write_text("def oops():\n    return 1\n")
    dist = tmp_path / "not_a_controller-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: not-a-controller\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[bionas_bench.controllers]\noops = not_a_controller:oops\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "not_a_controller", raising=False)
    with pytest.raises(ControllerError, match="plugin controller 'oops'.*not a Controller subclass"):
        bb.controllers.get("oops")
    assert main(["controllers", "list"]) == 0  # a broken plugin does not hide the others
    out = capsys.readouterr().out
    assert "oops" in out and "cannot load" in out and "random" in out
    assert main(["controllers", "show", "oops"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not a Controller subclass" in err[0]


def test_an_entry_point_that_cannot_be_imported_is_named_not_a_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """A plugin whose module is missing (or raises on import): listed as "cannot load"
    beside the others, and one line (exit 2) when shown or named in a sweep."""
    dist = tmp_path / "broken_plugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[bionas_bench.controllers]\nbroken = broken_plugin.nope:Nope\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(
        ControllerError, match=r"plugin controller 'broken' .*cannot be imported \(ModuleNotFound"
    ):
        bb.controllers.get("broken")
    assert main(["controllers", "list"]) == 0
    out = capsys.readouterr().out
    assert "broken" in out and "cannot load" in out and "random" in out
    assert main(["controllers", "show", "broken"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "fix or uninstall the package" in err[0]
    config = tmp_path / "uses-broken.toml"
    config.write_text(
        "[sweep]\nseed = 1\nlambdas = [1.0]\nruns = 1\n[budget]\nepisodes = 2\n"
        'archs_per_episode = 1\n[[controllers]]\nname = "broken"\n'
    )
    assert main(["sweep", str(config), "--out", str(tmp_path / "out"), "--dry-run"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot be imported" in err[0]


def test_a_plugin_whose_defaults_fail_its_checks_is_flagged_in_the_list(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    (tmp_path / "bad_defaults.py").write_text(
        "from dataclasses import dataclass\n"
        "from bionas_bench.controllers.base import check\n"
        "from bionas_bench.controllers.random_search import RandomSearch\n"
        "class BadDefaults(RandomSearch):\n"
        "    name = 'bad_defaults'\n"
        "    @dataclass(frozen=True)\n"
        "    class Params:\n"
        "        rate: float = -1.0\n"
        "        def __post_init__(self):\n"
        "            check(self.rate > 0, f'rate must be > 0, got {self.rate}')\n"
    )
    dist = tmp_path / "bad_defaults-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: bad-defaults\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        "[bionas_bench.controllers]\nbad_defaults = bad_defaults:BadDefaults\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "bad_defaults", raising=False)
    assert main(["controllers", "list"]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("bad_defaults"))
    assert "(invalid defaults: controller 'bad_defaults': bad hyper-parameter: rate must be > 0" in line


def test_cli_show_unknown_controller_is_one_line_and_non_zero(capsys: pytest.CaptureFixture) -> None:
    assert main(["controllers", "show", "nosuch"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown controller 'nosuch'; available:" in err[0]
    assert main(["controllers", "show", "random"]) == 0
    assert "Bergstra" in capsys.readouterr().out
