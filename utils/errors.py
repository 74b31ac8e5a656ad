"""User-facing errors and the one wrapper every script runs its main function in.

A `UserError` is a mistake the user can fix (a missing folder, a bad flag, an unreadable file):
scripts print its message and exit with code 1, without a traceback. argparse's usage errors
(exit code 2) are mapped to 1 as well. Anything else is a bug and
keeps its traceback.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable


class UserError(Exception):
    """A problem with the user's input; the message names the file or value and the problem."""


def stop_on_signals() -> None:
    """SIGINT and SIGTERM stop a script as Ctrl-C does: KeyboardInterrupt, so a folder or video
    run keeps what it finished, the demo closes, and the exit code is 130. Also when the script
    was started with SIGINT ignored (a background job of a non-interactive shell, where Python
    would otherwise leave `kill -INT` without effect)."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.default_int_handler)


def run_cli(main: Callable[[], int | None]) -> None:
    """Run a script's main function: user errors become one line on stderr and exit code 1;
    SIGINT and SIGTERM stop it with exit code 130 (stop_on_signals)."""
    stop_on_signals()
    try:
        code = main()
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    except SystemExit as exc:
        # argparse reports a bad flag with exit code 2; every failure of ours exits with 1.
        sys.exit(1 if exc.code == 2 else exc.code)
    sys.exit(int(code or 0))
