"""The README's examples work as written.

Every ``python`` code block of README.md is run (in a fresh folder, in order), and a line
``expr  # -> value`` must give ``value`` (a Python literal; text after two spaces is a
remark). Blocks that open ``bionas-pub.zarr`` get the store imported from the original
table, or are skipped with a reason where ../shared/bionas_pub is absent. Every
``bionas-bench`` command line of the ``bash`` blocks must be accepted by the CLI's
parser (so no documented command or flag is misspelt or gone), every ``tox -e`` names an
environment of tox.ini, and every ``pip install`` extra exists. The plugin blocks are
built and installed by ``test_controllers_plugin.py``.
"""

from __future__ import annotations

import ast
import configparser
import re
import shlex
import tomllib
from pathlib import Path

import pytest

from bionas_bench.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
BLOCK = re.compile(r"^```(\w+)\n(.*?)^```", re.S | re.M)
PLUGIN_FILES = ("# my_controllers/", "# tests/", "# pyproject.toml")
PUB_STORE = "bionas-pub.zarr"
CLAIM = re.compile(r"^(?P<code>\S.*?)\s+# -> (?P<value>.+?)(?:  .*)?$")


def _blocks(language: str) -> list[str]:
    return [body for lang, body in BLOCK.findall(README) if lang == language]


def _python_examples() -> list[str]:
    return [b for b in _blocks("python") if not b.startswith(PLUGIN_FILES)]


def _with_checks(source: str) -> str:
    """``source`` where each ``expr  # -> value`` line also asserts ``expr == value``."""
    lines = []
    for line in source.splitlines():
        match = CLAIM.match(line)
        if match:
            code, value = match["code"], match["value"]
            ast.literal_eval(value)  # the README states a literal
            says, claims = f"README: {code} gives ", f", not {value}"
            line = f"assert ({code}) == {value}, {says!r} + repr({code}) + {claims!r}"
        lines.append(line)
    return "\n".join(lines)


def test_the_readme_states_results_to_check():
    """The claims parsed below are the ones the README makes (so the check cannot be empty)."""
    claims = [line for b in _python_examples() for line in b.splitlines() if CLAIM.match(line)]
    assert len(claims) >= 5, claims


@pytest.mark.parametrize("index", range(len(_python_examples())))
def test_python_example_runs(index: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request):
    source = _python_examples()[index]
    monkeypatch.chdir(tmp_path)
    if PUB_STORE in source:
        pub = request.getfixturevalue("bionas_pub_store_path")  # skips without the reference data
        (tmp_path / PUB_STORE).symlink_to(pub, target_is_directory=True)
    exec(compile(_with_checks(source), f"README.md python block {index}", "exec"), {})


def _commands(program: str) -> list[list[str]]:
    """Command lines of the README's bash blocks that run ``program`` (continuations joined)."""
    found = []
    for body in _blocks("bash"):
        for line in body.replace("\\\n", " ").splitlines():
            lexer = shlex.shlex(line, posix=True, punctuation_chars=True)  # "#" starts a comment
            lexer.whitespace_split = True  # words end at blanks and at ( ) ; < > | & only
            words: list[str] = []
            for token in [*lexer, ";"]:
                if token in {"&&", "||", "|", ";"}:
                    if words[:1] == [program]:
                        found.append(words[1:])
                    words = []
                else:
                    words.append(token)
    return found


def test_every_documented_command_line_parses():
    commands = _commands("bionas-bench")
    assert len(commands) >= 10, commands
    parser = build_parser()
    for argv in commands:
        try:
            parser.parse_args(argv)
        except SystemExit as exc:
            pytest.fail(f"README command 'bionas-bench {shlex.join(argv)}' is refused by the CLI ({exc})")


def test_every_documented_tox_environment_exists():
    tox = configparser.ConfigParser()
    tox.read(ROOT / "tox.ini")
    known = {name.removeprefix("testenv:") for name in tox.sections() if name.startswith("testenv")}
    known |= {"py"}  # tox's default environment of [testenv]
    used = {argv[1] for argv in _commands("tox") if argv[:1] == ["-e"]}
    assert used, "the README documents no tox environment"
    assert used <= known, f"README names tox environments that tox.ini lacks: {sorted(used - known)}"


def test_every_documented_extra_exists():
    extras = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"])
    used = set()
    for argv in _commands("pip"):
        for word in argv:
            match = re.fullmatch(r"[^\[]*\[([\w,-]+)\]", word)
            if match:
                used |= set(match[1].split(","))
    assert used, "the README documents no pip extra"
    assert used <= extras, f"README names pip extras that pyproject.toml lacks: {sorted(used - extras)}"
