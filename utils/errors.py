"""User-facing errors and the one wrapper every script runs its main function in.

A `UserError` is a mistake the user can fix (a missing folder, a bad flag, an unreadable file):
scripts print its message and exit with code 1, without a traceback. Anything else is a bug and
keeps its traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Callable


class UserError(Exception):
    """A problem with the user's input; the message names the file or value and the problem."""


def run_cli(main: Callable[[], int | None]) -> None:
    """Run a script's main function: user errors become one line on stderr and exit code 1."""
    try:
        code = main()
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    sys.exit(int(code or 0))
