"""The ``promptcache`` command: list, read, compare, prune and check the recordings a suite committed.

An adapter like the plugin, over the same core: the settings, the store, the ledger's prices. It never
imports pytest: it reads pytest's configuration files itself (``project``), so it starts fast and runs
where only the recordings and this package are (a pre-commit hook, a CI step that checks a pull request).

Exit codes: 0 all good, 1 something was found (a problem, a corrupt recording), 2 the command could not
do what was asked (bad arguments, bad settings, no directory, unknown key, unreadable report or
configuration).
"""

from __future__ import annotations

import os
import sys

from .parser import Handler, build_parser
from .project import CliError, Project

__all__ = ["CliError", "Project", "build_parser", "main"]


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        # argparse exits for --help, --version and usage errors; main() reports a status instead.
        return exc.code if isinstance(exc.code, int) else 0 if exc.code is None else 2
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    handler: Handler = args.handler
    try:
        return handler(args, Project(args.dir))
    except CliError as exc:
        sys.stdout.flush()
        print(f"promptcache: {exc}", file=sys.stderr)
        return exc.code
    except BrokenPipeError:
        # The reader (head, less) went away: not an error worth a traceback.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    except KeyboardInterrupt:
        return 130
