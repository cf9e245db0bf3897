"""Progress bars of the command line, for a terminal and for a log file.

In a terminal a bar redraws itself in place (tqdm, carriage returns). Written to a file or
a pipe -- a CI log, ``cmd 2>&1 | tee log`` -- the same redraws pile up as one long line of
carriage returns, and an error printed afterwards lands on that line. So when stderr is not
a terminal, the bar is written as plain lines instead: its state once at the start, then at
most every :data:`LOG_INTERVAL` seconds, and its final state when it closes.
"""

from __future__ import annotations

import math
import re
import sys
import time
from collections.abc import Callable
from typing import IO, Any

#: seconds between the lines of a bar written to a log (a terminal redraws ~10 times a second)
LOG_INTERVAL = 30.0


#: a redraw of the same count within this many seconds of the last line is not written
#: (a bar's last update and its close, which differ only in the rate shown)
REPEAT_WINDOW = 1.0


class LogLines:
    """A text stream for tqdm that turns each redraw into one line of ``stream``: the
    carriage returns go, blank redraws (a bar erasing itself) are dropped, and a line
    equal to the one before it -- or showing the same count (the text before the
    ``[elapsed<remaining, rate]`` bracket) within :data:`REPEAT_WINDOW` seconds of it --
    is not written again. ``clock``: seconds, for tests."""

    def __init__(self, stream: IO[str], clock: Callable[[], float] = time.monotonic):
        self.stream = stream
        self.clock = clock
        self.last = ""
        self.last_at = -math.inf

    def write(self, text: str) -> int:
        for piece in re.split(r"[\r\n]", text):
            line = piece.rstrip()
            now = self.clock()
            repeat = line.split(" [")[0] == self.last.split(" [")[0] and now - self.last_at < REPEAT_WINDOW
            if line and line != self.last and not repeat:
                self.stream.write(line + "\n")
                self.last, self.last_at = line, now
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
    # maxinterval too: tqdm's monitor thread otherwise forces a redraw every 10 s
    return tqdm(
        disable=quiet or log is None,
        file=log,
        mininterval=LOG_INTERVAL,
        maxinterval=LOG_INTERVAL,
        ascii=True,
        **common,
    )


def skip_ahead(bar: Any, count: int, postfix: str) -> None:
    """Count ``count`` items done before this run (a resumed sweep's finished cells) without
    counting them in the bar's rate and remaining time: as if the bar had started there
    (tqdm's ``initial``), instead of one update of thousands of items in a millisecond.
    A disabled bar (``--quiet``) has none of these counters: nothing to do."""
    if bar.disable:
        return
    bar.n += count
    bar.last_print_n += count
    bar.initial += count
    bar.set_postfix_str(postfix, refresh=False)
    bar.refresh()
