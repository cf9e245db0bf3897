"""``bionas-bench controllers list|show``: the available search controllers."""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import shutil
from typing import TYPE_CHECKING, Any

from bionas_bench.cli import HelpFormatter
from bionas_bench.errors import BionasError

if TYPE_CHECKING:  # the commands import the registry (and torch with it): `--help` stays fast
    from bionas_bench.controllers.base import Controller


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "controllers",
        help="list the search controllers (built-in and plugins) and their hyper-parameters",
        description=(
            "Search controllers follow one ask/tell protocol. Built-ins are registered by name; "
            "third-party ones through the entry-point group 'bionas_bench.controllers'."
        ),
        epilog="examples:\n  bionas-bench controllers list\n  bionas-bench controllers show ppo",
        formatter_class=HelpFormatter,
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    listing = actions.add_parser(
        "list",
        help="one line per controller: name, fidelity, description, hyper-parameter defaults",
        description="Every available controller (built-in and plugins): its name, whether it uses "
        "the learning-curve fidelity, a one-line description and its hyper-parameter defaults.",
        epilog="examples:\n  bionas-bench controllers list\n"
        "  bionas-bench controllers show ppo   # one in full",
        formatter_class=HelpFormatter,
    )
    listing.set_defaults(func=run_list)
    show = actions.add_parser(
        "show",
        help="a controller's documentation and hyper-parameters",
        description="A controller's documentation (its docstring) and hyper-parameters with defaults.",
        epilog="example:\n  bionas-bench controllers show ppo",
        formatter_class=HelpFormatter,
    )
    show.add_argument("name", help="controller name, as printed by 'controllers list'")
    show.set_defaults(func=run_show)


def summary(cls: type[Controller]) -> str:
    """The first line of a controller's docstring."""
    doc = inspect.getdoc(cls) or ""
    return doc.splitlines()[0].replace("``", "") if doc else "(no description)"


def defaults(cls: type[Controller]) -> list[tuple[str, str, str]]:
    """(name, type, default) of every hyper-parameter, in declaration order.

    A default that stands for another value (see ``in_effect`` in
    :mod:`bionas_bench.controllers.base`) is shown with it, e.g. ``None (in effect 'bootstrap')``.
    """
    implied = in_effect(cls)
    out = []
    for field in dataclasses.fields(cls.Params):
        if field.name in implied:
            default = f"{field.default!r} (in effect {implied[field.name]!r})"
        elif field.default is not dataclasses.MISSING:
            default = repr(field.default)
        elif field.default_factory is not dataclasses.MISSING:
            default = repr(field.default_factory())
        else:
            default = "(required)"
        kind = field.type if isinstance(field.type, str) else getattr(field.type, "__name__", str(field.type))
        out.append((field.name, kind, default))
    return out


def in_effect(cls: type[Controller]) -> dict[str, Any]:
    """What the default hyper-parameters left at None stand for, if ``Params`` says (else {})."""
    method = getattr(cls.Params, "in_effect", None)
    return method(cls.Params()) if method is not None else {}


def run_list(args: argparse.Namespace) -> int:
    from bionas_bench import controllers
    from bionas_bench.controllers.base import make_params

    rows = []
    for name in controllers.list():
        try:
            cls = controllers.get(name)
        except BionasError as exc:  # a broken plugin must not hide the others
            rows.append((name, "?", f"(cannot load: {exc})", ""))
            continue
        try:
            make_params(cls, {})  # defaults that fail their own checks: the plugin cannot run
        except BionasError as exc:
            rows.append((name, "?", f"(invalid defaults: {exc})", ""))
            continue
        params = [f"{n}={d}" for n, _, d in defaults(cls)] or ["-"]
        rows.append((name, "epochs" if cls.uses_fidelity else "-", summary(cls), params))
    width = max(len(r[0]) for r in rows) if rows else 4
    indent = " " * (width + 14)
    columns = max(60, shutil.get_terminal_size((100, 24)).columns)  # 100 in a pipe
    print(f"{'name':<{width}}  fidelity  description")
    for name, fidelity, description, params in rows:
        print(f"{name:<{width}}  {fidelity:<8}  {description}")
        if params:
            print("\n".join(_wrap_items(["hyper-parameters:", *params], indent, columns)))
    return 0


def _wrap_items(items: list[str], indent: str, columns: int) -> list[str]:
    """``items[0]`` (a label) and the other items joined by ", " into lines of at most
    ``columns`` characters (an item longer than a line gets one of its own), never breaking
    inside an item such as ``feed=None (in effect 'probs')``; later lines indented two more."""
    lines, line = [], indent + items[0]
    for k, item in enumerate(items[1:]):
        sep = " " if k == 0 else ", "  # no comma after the label
        if len(line) + len(sep) + len(item) > columns - 1 and line.strip():  # room for a ","
            lines.append(line + ("," if k else ""))
            line = indent + "  " + item
        else:
            line += sep + item
    return [*lines, line]


def run_show(args: argparse.Namespace) -> int:
    from bionas_bench import controllers

    cls = controllers.get(args.name)
    source = "built-in" if args.name in controllers.BUILTIN else "plugin"
    print(f"{args.name}  ({source}: {cls.__module__}.{cls.__qualname__})")
    print(f"fidelity: {'epochs per asked id' if cls.uses_fidelity else 'none (full training)'}")
    rows = defaults(cls)
    if rows:
        print("hyper-parameters (defaults):")
        width = max(len(n) for n, _, _ in rows)
        for name, kind, default in rows:
            print(f"  {name:<{width}}  {default}  ({kind})")
    else:
        print("hyper-parameters: none")
    print()
    print(inspect.getdoc(cls) or "(no documentation)")
    return 0
