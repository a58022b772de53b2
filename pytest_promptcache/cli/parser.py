"""The command line of ``promptcache``: its commands, their options, and which function runs each."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from datetime import timedelta

from .. import __version__
from ..advice import MAX_RECORDINGS
from ..settings import SettingsError, parse_age
from .advise import cmd_advise
from .importvcr import add_parser as add_import
from .listing import cmd_diff, cmd_ls, cmd_show
from .project import Project
from .prune import cmd_prune
from .recordings import MIN_PREFIX
from .serve import SERVE_HELP, add_serve_arguments, cmd_serve
from .stats import cmd_migrate, cmd_stats
from .verify import cmd_verify

Handler = Callable[[argparse.Namespace, Project], int]


def age(text: str) -> timedelta:
    """An age as the plugin's max-age reads it; a bad one is an argparse error that names the option."""
    try:
        return parse_age(text, "--older-than")
    except SettingsError:
        # argparse says which option; the settings' message would name it a second time.
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an age; write a number and h, d or w: 12h, 30d, 2w"
        ) from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="promptcache",
        description="Look at, compare, prune and check the LLM recordings pytest-promptcache made, import "
        "vcrpy cassettes, and serve recordings to clients outside pytest.",
        epilog="The directory is the one the pytest configuration of the current directory names "
        "(ini promptcache_dir, default cassettes, relative to the rootdir) unless --dir is given. "
        "Exit status: 0 fine, 1 problems found, 2 usage error.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    dir_help = "recordings directory (default: promptcache_dir of the pytest configuration, or cassettes)"
    parser.add_argument("--dir", metavar="DIR", default=None, help=dir_help)
    # The same option after the command; SUPPRESS keeps it from overwriting a --dir given before it.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--dir", metavar="DIR", default=argparse.SUPPRESS, help=dir_help)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    def command(name: str, handler: Handler, help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, parents=[common], help=help_text, description=help_text)
        sub.set_defaults(handler=handler)
        return sub

    ls = command("ls", cmd_ls, "list recordings, oldest first, with tokens and cost when recorded")
    ls.add_argument("--model", metavar="SUBSTR", help="only recordings whose model contains SUBSTR")
    ls.add_argument("--test", metavar="SUBSTR", help="only recordings whose test node id contains SUBSTR")
    ls.add_argument(
        "--endpoint", metavar="SUBSTR", help="only recordings whose method, host or path contain SUBSTR"
    )
    ls.add_argument(
        "--older-than", metavar="AGE", type=age, help="only recordings older than AGE: 12h, 30d, 2w"
    )
    ls.add_argument("--json", action="store_true", help="machine-readable output")

    show = command("show", cmd_show, "print one recording's request and response")
    show.add_argument(
        "key",
        metavar="KEY",
        help=f"a key, a unique prefix of one (at least {MIN_PREFIX} characters) or a file name",
    )

    diff = command("diff", cmd_diff, "unified diff of two recordings' requests and responses")
    diff.add_argument("key_a", metavar="KEY")
    diff.add_argument("key_b", metavar="KEY")
    diff.add_argument(
        "-U", "--context", type=int, default=3, metavar="N", help="lines of context (default 3)"
    )

    prune = command("prune", cmd_prune, "delete the recordings a full test run did not use")
    prune.add_argument(
        "--unused",
        metavar="REPORT.json",
        required=True,
        help="a report of a full run (pytest --promptcache-report=REPORT.json); its unused_recordings go",
    )
    prune.add_argument("--dry-run", action="store_true", help="list what would be deleted; delete nothing")

    verify = command(
        "verify",
        cmd_verify,
        "check recordings: schema, key, no secrets, no stray files (exit 1 if anything is found)",
    )
    verify.add_argument(
        "files",
        nargs="*",
        metavar="FILE",
        help="check only these files (as pre-commit passes them); default: the whole directory",
    )

    migrate = command(
        "migrate", cmd_migrate, "rewrite recordings of older schema versions in the current one"
    )
    migrate.add_argument("--dry-run", action="store_true", help="list what would be rewritten; write nothing")

    advise = command(
        "advise",
        cmd_advise,
        "repeated prompt prefixes a provider's prompt cache would serve: what caching them saves, where "
        "the breakpoint goes, and prefixes broken by changing text",
    )
    advise.add_argument("--json", action="store_true", help="machine-readable output")
    advise.add_argument(
        "--limit",
        type=int,
        default=MAX_RECORDINGS,
        metavar="N",
        help=f"read at most N recordings (default {MAX_RECORDINGS})",
    )

    stats = command("stats", cmd_stats, "recordings, size, tokens and cost when recorded, by model")
    stats.add_argument("--json", action="store_true", help="machine-readable output")

    add_import(command)
    add_serve_arguments(command("serve", cmd_serve, SERVE_HELP))
    return parser
