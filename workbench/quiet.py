"""What libraries may print on a user's terminal: nothing, unless WORKBENCH_DEBUG is set.

Every process workbench starts calls `quiet_libraries()` first (the CLI and the app, the trainer, the
supervisor, the agent on a remote host). A library's warning (a deprecation inside asyncssh's
crypto, a transformers notice about generation flags) is not the user's to act on, and one printed
before an error breaks the promise that a failing command prints one line naming the cause.
`WORKBENCH_DEBUG=1` shows them all again, in this process and in every process it starts.

Standard library only: it runs before anything heavy is imported.
"""

from __future__ import annotations

import os
import warnings

DEBUG_ENV = "WORKBENCH_DEBUG"
_OFF = ("", "0", "false", "no", "off")


def debug_enabled(environ: os._Environ[str] | dict[str, str] | None = None) -> bool:
    """True when $WORKBENCH_DEBUG asks for libraries' warnings (any value but empty/0/false/no/off)."""
    value = (os.environ if environ is None else environ).get(DEBUG_ENV, "")
    return value.strip().lower() not in _OFF


def quiet_libraries() -> None:
    """Silence library warnings and notices for this process and the Python processes it starts.

    - `warnings`: ignored (workbench's own warnings that must reach the user are caught and recorded
      where they arise, e.g. non-finite rewards become run events);
    - PYTHONWARNINGS=ignore for child Pythons started before they can call this (a reward module
      imported in a separate interpreter to check it);
    - transformers' and datasets' loggers at errors only, read from the environment at their import.
    """
    if debug_enabled():
        return
    warnings.simplefilter("ignore")
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("DATASETS_VERBOSITY", "error")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
