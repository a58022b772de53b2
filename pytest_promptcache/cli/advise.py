"""``promptcache advise``: the repeated prompt prefixes in the recordings, what a provider's prompt
cache would save on them, and where the breakpoint goes."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime

from ..advice import advise_directory
from ..report.advice import advice_lines
from ..words import plural
from .project import CliError, Project
from .render import display


def cmd_advise(args: argparse.Namespace, project: Project) -> int:
    directory = project.existing_directory()
    if args.limit < 1:
        raise CliError(f"--limit {args.limit}: give at least 1 recording to read")
    advice = advise_directory(
        directory,
        project.prices,
        datetime.now(UTC),
        max_size=project.settings.limits.max_recording_size,
        limit=args.limit,
    )
    if args.json:
        print(advice.model_dump_json(indent=2))
        return 0
    print(f"{plural(advice.recordings, 'recording')} in {display(directory)}, each counted once:")
    if advice.truncated:
        print(f"(only the first {args.limit} were read: --limit raises it)")
    if advice.unreadable:
        print(
            f"({plural(advice.unreadable, 'unreadable recording')} left out: promptcache verify names them)"
        )
    print()
    for line in advice_lines(advice):
        print(line)
    return 0
