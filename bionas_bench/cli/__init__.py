"""The ``bionas-bench`` command line.

Each command group lives in its own module of this package and exposes
``register(subparsers)``; this module assembles them, runs the chosen command and
turns a :class:`~bionas_bench.errors.BionasError`, an ``OSError`` of a path the
system refuses, or running out of memory, into one line on stderr and a non-zero exit.
Library code never prints; commands render.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import re
import signal
import sys
import tempfile
import textwrap
import threading
from collections.abc import Iterator

from bionas_bench import __version__
from bionas_bench.errors import BionasError, is_out_of_memory

# Command modules, in the order their commands appear in --help.
COMMAND_MODULES = ("demo", "data", "train", "store", "sweep", "report", "controllers", "regress")

EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT
EXIT_TERMINATED = 143  # 128 + SIGTERM
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, what a shell reports for a command its reader closed


class Terminated(KeyboardInterrupt):
    """SIGTERM (a CI job cancelled, ``timeout``, ``kill``), raised where the command is so
    that it stops as on Ctrl-C: locks released, local workers shut down, one line."""


def _raise_terminated(signum: int, frame: object) -> None:
    raise Terminated


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """Turn SIGTERM into :class:`Terminated` while a command runs (main thread only: a
    signal handler cannot be set elsewhere, e.g. when ``main`` is called from a thread)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    before = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, before)


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions and epilogs as written for a wide terminal, refilled for this one.

    Consecutive unindented lines are prose: they are joined into one paragraph and
    wrapped to the terminal (a line break in the source is not a break in the output).
    Blank lines, headings (an unindented line ending in ``:``) and indented lines
    (examples, commands) are kept as written, never wrapped: a command split over two
    lines could not be copied.
    """

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        out: list[str] = []
        prose: list[str] = []

        def flush() -> None:
            if prose:
                paragraph = " ".join(prose)  # wrapped only at spaces: --options stay whole
                lines = textwrap.wrap(paragraph, width - len(indent), break_on_hyphens=False)
                out.extend(indent + line for line in lines)
                prose.clear()

        for line in text.splitlines():
            stripped = line.strip()
            if stripped and line == line.lstrip() and not stripped.endswith(":"):
                prose.append(stripped)
                continue
            flush()
            out.append(indent + line if stripped else "")
        flush()
        return "\n".join(out)

    def _split_lines(self, text: str, width: int) -> list[str]:
        """An option's or command's help, wrapped at spaces only ("per-architecture" and
        "--replicates" are never split at their hyphens)."""
        return textwrap.wrap(" ".join(text.split()), width, break_on_hyphens=False)


def add_quiet_option(parser: argparse.ArgumentParser) -> None:
    """``--quiet`` (no progress bar) as every long-running command spells it.

    ``--no-progress`` is kept as the older name that ``sweep`` and ``regress`` had.
    """
    parser.add_argument("--quiet", "--no-progress", dest="quiet", action="store_true", help="no progress bar")


def add_store_option(parser: argparse.ArgumentParser, help: str) -> None:
    """``--store`` as the commands that run sweeps spell it: a path or an fsspec URL."""
    parser.add_argument("--store", default=None, metavar="STORE", help=f"{help} (path or fsspec URL)")


def checked_store(value: str | os.PathLike[str] | None, error: type[BionasError]) -> str | None:
    """``--store`` as text; a local path that does not exist is an ``error`` naming the fix
    (a URL is checked when the store is opened)."""
    if value is None:
        return None
    text = os.fspath(value)
    if "://" not in text and not os.path.exists(text):
        raise error(f"--store {text} does not exist; pass the path or URL of a bionas_bench store")
    return text


#: options that name where a command writes, checked for permission before any work
OUTPUT_OPTIONS = ("out", "report", "keep")


def check_outputs_writable(args: argparse.Namespace) -> None:
    """Refuse an output path (``--out``, ``--report``, ``--keep``) that cannot be written,
    before any work (a long run would otherwise fail only when it writes), dry runs
    included: a file where the path needs a folder, or a folder this user cannot write in.
    Writing is probed with an unnamed temporary file, which also catches read-only and
    virtual file systems that permission bits do not show."""
    for name in OUTPUT_OPTIONS:
        value = getattr(args, name, None)
        if value is None or "://" in os.fspath(value):
            continue
        flag = f"--{name}"
        path = os.path.abspath(os.fspath(value))
        _refuse_inside_an_artefact(flag, value, path)
        folder = path if os.path.isdir(path) else os.path.dirname(path)
        while not os.path.exists(folder):
            folder = os.path.dirname(folder)
        if not os.path.isdir(folder):
            raise BionasError(f"{flag} {value}: {folder} is a file, not a folder; choose another {flag}")
        denied = f"{flag} {value}: no permission to write in {folder}; choose another {flag}"
        if not os.access(folder, os.W_OK | os.X_OK):
            raise BionasError(denied)
        try:
            with tempfile.TemporaryFile(dir=folder):
                pass
        except PermissionError:
            raise BionasError(denied) from None
        except OSError as exc:
            raise BionasError(
                f"{flag} {value}: cannot write in {folder} ({exc.strerror}); choose another {flag}"
            ) from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bionas-bench",
        description=(
            "Tabular benchmark for knowledge-guided neural architecture search on genomic "
            "sequences (BioNAS). Train every architecture of a finite space, serve the results "
            "through a bootstrap oracle, and compare search controllers by rank."
        ),
        epilog="Run 'bionas-bench COMMAND --help' for the options of one command.",
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(f"bionas_bench.cli.{name}").register(sub)
    return parser


#: files that mark a folder as something this package wrote and manages as a whole
ARTEFACT_MARKERS = (("zarr.json", "the Zarr store"), ("sweep.json", "the sweep results folder"))


def _refuse_inside_an_artefact(flag: str, value: object, path: str) -> None:
    """Refuse an output path strictly inside a Zarr store or a sweep's results folder:
    the files would become part of it (a store's nodes, a results folder's contents).
    The path itself may be one (a store or results folder resumed in place)."""
    folder = os.path.dirname(path)
    while folder != os.path.dirname(folder):
        for marker, what in ARTEFACT_MARKERS:
            if os.path.isfile(os.path.join(folder, marker)):
                raise BionasError(f"{flag} {value} is inside {what} {folder}; choose a folder outside it")
        folder = os.path.dirname(folder)


#: where the commands with sub-commands keep the one chosen
SUBCOMMAND_DESTS = ("action", "data_command", "store_command")


def _command(args: argparse.Namespace) -> str:
    """The command as typed, sub-command included (``store info``), for messages: the
    prefix argparse's own errors use too."""
    sub = next((getattr(args, d) for d in SUBCOMMAND_DESTS if getattr(args, d, None)), None)
    return f"{args.command} {sub}" if sub else args.command


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse ``argv``; arguments no option takes are refused by the parser of the command
    as typed, so that its usage lines come with the error (argparse's top-level parser
    would print the top-level usage)."""
    parser = build_parser()
    _help_without_a_command(parser, sys.argv[1:] if argv is None else argv)
    args, extras = parser.parse_known_args(argv)
    if extras:
        _chosen_parser(parser, args).error(f"unrecognized arguments: {' '.join(extras)}")
    return args


def _help_without_a_command(parser: argparse.ArgumentParser, argv: list[str]) -> None:
    """``bionas-bench`` or a group (``bionas-bench store``) without its command: its help,
    which lists the commands, then the error (argparse alone prints only the error)."""
    for position in range(len(argv) + 1):
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not subs:
            return
        if position == len(argv):
            parser.print_help(sys.stderr)
            parser.exit(EXIT_BAD_INPUT, f"{parser.prog}: error: choose one of the {subs[0].metavar}s above\n")
        if argv[position] not in subs[0].choices:
            return  # an option, or a name argparse refuses with its own message
        parser = subs[0].choices[argv[position]]


def _chosen_parser(parser: argparse.ArgumentParser, args: argparse.Namespace) -> argparse.ArgumentParser:
    """The deepest (sub-)parser that ``args`` went through."""
    while True:
        # argparse keeps sub-parsers in a private action type; there is no public accessor
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        chosen = getattr(args, subs[0].dest, None) if subs else None
        if chosen is None:
            return parser
        parser = subs[0].choices[chosen]


def _out_of_memory_message(exc: BaseException) -> str:
    """One line for a command that ran out of memory: the allocation that failed (the first
    sentence of torch's long message) and the fix. Sizes given as input (a controller's
    LSTM, a space's layers, runs or workers at once) are what usually makes it."""
    tried = re.search(r"tried to allocate (\d+) bytes", str(exc))  # torch's CPU allocator
    if tried:
        what = f"an allocation of {int(tried.group(1)) / 2**30:.1f} GiB failed"
    else:
        what = str(exc).strip().split(". ")[0].split("\n")[0]
    detail = f" ({what})" if what else ""
    return (
        f"out of memory{detail}; choose smaller sizes (a controller's "
        "hyper-parameters, a space's filters or units) or fewer runs or workers at once, or free memory"
    )


def main(argv: list[str] | None = None) -> int:
    try:
        args = parse_args(argv)
    except KeyboardInterrupt:  # while the command modules load
        print("bionas-bench: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    try:
        with _sigterm_as_interrupt():
            check_outputs_writable(args)
            code = int(args.func(args) or 0)
            sys.stdout.flush()  # output still buffered meets a closed pipe here, inside this try
        return code
    except BionasError as exc:
        print(f"bionas-bench {_command(args)}: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt as exc:
        hint = getattr(args, "interrupt_hint", None)  # a resumable command says how to resume
        tail = f"; {hint.format(**vars(args))}" if hint else ""
        what = "terminated (SIGTERM)" if isinstance(exc, Terminated) else "interrupted"
        print(f"bionas-bench {_command(args)}: {what}{tail}", file=sys.stderr)
        return EXIT_TERMINATED if isinstance(exc, Terminated) else EXIT_INTERRUPTED
    except (MemoryError, RuntimeError) as exc:  # torch's OutOfMemoryError is a RuntimeError
        if not is_out_of_memory(exc):
            raise
        print(f"bionas-bench {_command(args)}: error: {_out_of_memory_message(exc)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except BrokenPipeError:
        # The reader went away (`bionas-bench store info | head`): stop quietly, as a
        # command killed by SIGPIPE would, and keep Python from complaining again when it
        # flushes stdout at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    except OSError as exc:  # a path the system refuses (permissions, a full disk, ...): one line
        where = f": {exc.filename}" if exc.filename else ""
        print(f"bionas-bench {_command(args)}: error: {exc.strerror or exc}{where}", file=sys.stderr)
        return EXIT_BAD_INPUT
