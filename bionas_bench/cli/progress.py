"""Progress bars of the command line, for a terminal and for a log file.

In a terminal a bar redraws itself in place (tqdm, carriage returns). Written to a file or
a pipe -- a CI log, ``cmd 2>&1 | tee log`` -- the same redraws pile up as one long line of
carriage returns, and an error printed afterwards lands on that line. So when stderr is not
a terminal, the bar is written as plain lines instead: its state once at the start, then at
most every :data:`LOG_INTERVAL` seconds, and its final state when it closes.
"""

from __future__ import annotations

import re
import sys
from typing import IO, Any

#: seconds between the lines of a bar written to a log (a terminal redraws ~10 times a second)
LOG_INTERVAL = 30.0


class LogLines:
    """A text stream for tqdm that turns each redraw into one line of ``stream``: the
    carriage returns go, blank redraws (a bar erasing itself) are dropped, and a line
    equal to the one before it is not written again."""

    def __init__(self, stream: IO[str]):
        self.stream = stream
        self.last = ""

    def write(self, text: str) -> int:
        for piece in re.split(r"[\r\n]", text):
            line = piece.rstrip()
            if line and line != self.last:
                self.stream.write(line + "\n")
                self.last = line
        return len(text)

    def flush(self) -> None:
        self.stream.flush()


def make_bar(
    total: int | None,
    unit: str,
    desc: str,
    quiet: bool = False,
    leave: bool = True,
    bar_format: str | None = None,
) -> Any:
    """A tqdm bar on stderr: redrawn in place in a terminal, plain lines in a log."""
    from tqdm import tqdm

    stream = sys.stderr
    common = {"total": total, "unit": unit, "desc": desc, "leave": leave, "bar_format": bar_format}
    if stream is not None and stream.isatty():
        return tqdm(disable=quiet, file=stream, **common)
    log = LogLines(stream) if stream is not None else None
    return tqdm(disable=quiet or log is None, file=log, mininterval=LOG_INTERVAL, ascii=True, **common)
