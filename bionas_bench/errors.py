"""Project exception types.

Every error raised on bad input is a :class:`BionasError` whose message names the
offending input and says how to fix it. The CLI prints the message as one line on
stderr and exits non-zero; library users can catch the specific subclass. Checks shared
by a command and its Python function name the command-line option (``--threads``), which
is the function's argument without the dashes and with ``_`` for ``-`` (``threads=``).
"""

from __future__ import annotations

import sys


class BionasError(Exception):
    """Base class of every error bionas_bench raises on bad input."""


class ManifestError(BionasError):
    """A manifest is missing, unknown, unparsable or fails validation."""


class SpaceError(BionasError):
    """An unknown space, or an architecture id / choice outside a space."""


class DataError(BionasError):
    """A dataset, FASTA file or motif source is missing or malformed."""


class KnowledgeError(BionasError):
    """Filters or motifs of the wrong shape or content for knowledge scoring."""


class ControllerError(BionasError):
    """An unknown controller, a bad hyper-parameter, or a misuse of ask/tell."""


class TrainingError(BionasError):
    """A child network, training manifest or farm run that cannot be built or resumed."""


class StoreError(BionasError):
    """A results store is missing, malformed, read-only, or lacks a requested array."""


class OracleError(BionasError):
    """A bad oracle query or setting: unknown arch, bad lambda, no completed replicate."""


class SweepError(BionasError):
    """A sweep config, results folder or scheduler that cannot be used as given."""


class RegressError(BionasError):
    """A regression baseline or check that cannot be used as given (missing, bad format, bad alpha)."""


#: What torch's CPU allocator says, in a plain RuntimeError, when an allocation fails
#: (on a GPU torch raises its own OutOfMemoryError).
CPU_ALLOCATOR_FAILED = "can't allocate memory"


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` is a failed allocation: Python's MemoryError (numpy raises a
    subclass), torch's OutOfMemoryError (a GPU; a RuntimeError) or the RuntimeError of
    torch's CPU allocator. torch is looked up only if already imported, so that the
    command line never imports it for this."""
    if isinstance(exc, MemoryError):
        return True
    oom = getattr(sys.modules.get("torch"), "OutOfMemoryError", None)
    if oom is not None and isinstance(exc, oom):
        return True
    return isinstance(exc, RuntimeError) and CPU_ALLOCATOR_FAILED in str(exc)
