"""The ``promptcache`` command: list, read, compare, prune and check the recordings a suite committed.

An adapter like the plugin, over the same core: the settings, the store, the ledger's prices. It never
imports pytest: it reads pytest's configuration files itself (``project``), so it starts fast and runs
where only the recordings and this package are (a pre-commit hook, a CI step that checks a pull request).

Exit codes: 0 all good, 1 something was found (a problem, a corrupt recording), 2 the command could not
do what was asked (bad arguments, bad settings, no directory, unknown key, unreadable report or
configuration).
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
from typing import TextIO

from .parser import Handler, build_parser
from .project import CliError, Project

__all__ = ["CliError", "Project", "build_parser", "main"]


class _Stdout(io.TextIOBase):
    """Standard output for a reader that may leave early (``promptcache ls --json | head -1``): once it
    has, the rest of the output goes nowhere and the command still finishes, so its exit status says
    what it found (0 for a listing, 1 when verify found a problem), not that the pipe closed."""

    def __init__(self, real: TextIO) -> None:
        self._real = real
        self._gone = False

    def write(self, text: str) -> int:
        if not self._gone:
            try:
                self._real.write(text)
            except BrokenPipeError:
                self._reader_left()
        return len(text)

    def flush(self) -> None:
        if not self._gone:
            try:
                self._real.flush()
            except BrokenPipeError:
                self._reader_left()

    def _reader_left(self) -> None:
        self._gone = True
        # Python flushes stdout once more at exit: what is still buffered then goes to /dev/null instead
        # of failing with "Exception ignored ... BrokenPipeError" and status 120.
        with contextlib.suppress(OSError, ValueError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self._real.fileno())
            os.close(devnull)


def main(argv: list[str] | None = None) -> int:
    with contextlib.redirect_stdout(_Stdout(sys.stdout)) as out:
        status = _run(argv)
        out.flush()
    return status


def _run(argv: list[str] | None) -> int:
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
    except KeyboardInterrupt:
        return 130
