"""``promptcache import vcr PATH...``: vcrpy cassettes converted to recordings, for a suite that moves
off its cassettes (``compat_vcr.importer`` does the work; this module reads the arguments and says what
happened)."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from pathlib import Path
from typing import Any

from ..compat_vcr import INSTALL_HINT
from ..store.files import dumps_recording, write_atomic
from ..words import plural
from .project import CliError, Project
from .render import display


def load_serializer(spec: str, search: list[Path]) -> Any:
    """``module:object``, imported as the suite's conftest would import it (its directory on the path)."""
    module_name, sep, attribute = spec.partition(":")
    if not sep or not module_name or not attribute:
        raise CliError(f"--serializer {spec!r}: write MODULE:OBJECT, e.g. tests.cassettes:serializer")
    for directory in reversed(search):
        if str(directory) not in sys.path:
            sys.path.insert(0, str(directory))
    try:
        found: Any = importlib.import_module(module_name)
        for part in attribute.split("."):
            found = getattr(found, part)
    except (ImportError, AttributeError) as exc:
        raise CliError(f"--serializer {spec!r} cannot be imported: {exc}") from None
    if not callable(getattr(found, "deserialize", None)):
        raise CliError(f"--serializer {spec!r} has no deserialize(text) method: it is not a vcr serializer")
    return found


def cmd_import(args: argparse.Namespace, project: Project) -> int:
    try:
        from ..compat_vcr.importer import Importer, cassette_files
    except ImportError as exc:
        if (exc.name or "").split(".")[0] not in ("vcr", "yaml", "wrapt"):
            raise
        raise CliError(f"reading vcrpy cassettes takes vcrpy: {INSTALL_HINT}") from None
    settings = project.settings
    rootdir = project.config.rootdir
    paths = [Path(p) for p in args.paths]
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        raise CliError(f"no such file or directory: {', '.join(missing)}")
    serializer = load_serializer(args.serializer, [rootdir, Path.cwd()]) if args.serializer else None
    files = list(cassette_files(paths, recordings=settings.cassette_dir.resolve()))
    if not files:
        raise CliError(f"no cassettes (*.yaml, *.yml, *.json) under {', '.join(args.paths)}")
    plan = Importer(settings, rootdir, os.environ).plan(files, serializer)
    directory = settings.cassette_dir
    written = kept = 0
    for recording in plan.recordings:
        path = directory / f"{recording.key}.json"
        if path.exists():
            kept += 1  # a recording is never overwritten: the one there may have been recorded since
            continue
        if not args.dry_run:
            write_atomic(path, dumps_recording(recording.to_json_data()))
        written += 1
    verb = "would write" if args.dry_run else "wrote"
    print(
        f"read {plural(plan.interactions, 'interaction')} from {plural(plan.cassettes, 'cassette')}; "
        f"{verb} {plural(written, 'recording')} to {display(directory)}"
    )
    if plan.scoped:
        print(
            f"  {plan.scoped} of them scoped to their cassette: requests answered differently "
            "(in one cassette, or in several), served to @pytest.mark.vcr tests in order"
        )
    if kept:
        print(f"  {plural(kept, 'recording')} already there, kept as they are")
    if plan.endpoints:
        print(
            f"{plural(len(plan.endpoints), 'request')} to endpoints that are not LLM APIs "
            "(served from recordings only once the configuration names them):"
        )
        print("promptcache_endpoints =\n    defaults")
        for pattern in plan.endpoints:
            print(f"    {pattern}")
    if plan.problems:
        print(f"could not convert ({len(plan.problems)}):", file=sys.stderr)
        for problem in plan.problems:
            print(f"  {problem}", file=sys.stderr)
        return 1
    return 0


def add_parser(command: Any) -> None:
    """The ``import`` command's arguments (``command`` makes the sub-parser)."""
    sub = command(
        "import", cmd_import, "convert vcrpy / pytest-recording cassettes to recordings (YAML or JSON)"
    )
    sub.add_argument("format", choices=["vcr"], help="the cassettes' tool: vcr (vcrpy, pytest-recording)")
    sub.add_argument("paths", nargs="+", metavar="PATH", help="cassette files, or directories to search")
    sub.add_argument(
        "--serializer",
        metavar="MODULE:OBJECT",
        help="the suite's own vcr serializer (what pytest_recording_configure registers), e.g. "
        "tests.conftest:serializer; default: by suffix, vcr's JSON or YAML",
    )
    sub.add_argument("--dry-run", action="store_true", help="say what would be written; write nothing")
