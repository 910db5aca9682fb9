"""The ``edgesim`` script's entry point.

Importing the CLI takes a moment (click, rich and the commands' modules). A Ctrl-C in
that moment would end in a ``KeyboardInterrupt`` traceback, as nothing has taken
signals over yet; here it ends as an interrupted command does (``interrupted``, status
130). This module imports nothing else, so that window shrinks to Python's own start-up.
"""

from __future__ import annotations

import sys


def main() -> None:
    """Run the ``edgesim`` command line."""
    try:
        from edgesim.cli import main as cli_main
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        raise SystemExit(130) from None
    cli_main()
