"""``promptcache stats`` (the recordings summed by model) and ``promptcache migrate`` (the recordings
rewritten in the current schema)."""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from ..ledger import NO_MODEL
from ..migrate import migrate_directory
from ..models import SCHEMA_VERSION
from ..prices import money, usd
from ..words import plural
from .project import Project
from .recordings import RecordingInfo, load_all, print_unreadable, unreadable_json
from .render import display, human_size, print_table


@dataclass
class Tally:
    recordings: int = 0
    size: int = 0
    input_tokens: int = 0
    cached_input_tokens: int = 0
    output_tokens: int = 0
    # Summed as decimals: a thousand costs of a millionth of a dollar must add up to what they print.
    cost: Decimal = Decimal(0)
    without_usage: int = 0
    unpriced: int = 0

    def add(self, info: RecordingInfo) -> None:
        self.recordings += 1
        self.size += info.size
        if info.usage is None:
            self.without_usage += 1
            return
        self.input_tokens += info.usage.input_tokens
        self.cached_input_tokens += info.usage.cached_input_tokens
        self.output_tokens += info.usage.output_tokens
        if info.cost_usd is None:
            self.unpriced += 1
        else:
            self.cost += Decimal(str(info.cost_usd))

    def cost_cell(self) -> str:
        # Never a silent $0 for recordings nobody could price.
        if self.unpriced and self.unpriced + self.without_usage == self.recordings:
            return "unpriced"
        if self.without_usage == self.recordings:
            return "-"
        return usd(money(self.cost)) + ("+?" if self.unpriced else "")

    def as_json(self) -> dict[str, Any]:
        return {
            "recordings": self.recordings,
            "size_bytes": self.size,
            "input_tokens": self.input_tokens,
            "cached_input_tokens": self.cached_input_tokens,
            "output_tokens": self.output_tokens,
            "cost_usd": money(self.cost),
            "without_usage": self.without_usage,
            "unpriced": self.unpriced,
        }


def cmd_stats(args: argparse.Namespace, project: Project) -> int:
    directory = project.existing_directory()
    infos, errors = load_all(directory, project.prices, project.settings.limits.max_recording_size)
    totals = Tally()
    by_model: dict[str, Tally] = {}
    for info in infos:
        totals.add(info)
        by_model.setdefault(info.model or NO_MODEL, Tally()).add(info)
    by_model = dict(sorted(by_model.items()))
    if args.json:
        out = {
            "directory": str(directory),
            "totals": totals.as_json(),
            "by_model": {m: t.as_json() for m, t in by_model.items()},
            "errors": unreadable_json(errors),
        }
        print(json.dumps(out, indent=2, ensure_ascii=False))
        return 1 if errors else 0
    print(f"{plural(totals.recordings, 'recording')} in {display(directory)}, {human_size(totals.size)}")
    if infos:
        print()
        header = ("model", "recordings", "size", "input", "cached", "output", "cost when recorded")
        rows = [_stats_row(model, tally) for model, tally in (*by_model.items(), ("total", totals))]
        print_table(header, rows, right={1, 2, 3, 4, 5, 6}, money=6)
    if totals.without_usage:
        print(
            f"\n{plural(totals.without_usage, 'recording')} without usage "
            "(e.g. streams without include_usage, errors): not in the totals"
        )
    unpriced = [model for model, tally in by_model.items() if tally.unpriced]
    if unpriced:
        print(
            f"\nunpriced: {', '.join(unpriced)} ({plural(totals.unpriced, 'recording')}; "
            "tokens counted, no dollars): add them to ini promptcache_prices"
        )
    print_unreadable(errors)
    return 1 if errors else 0


def _stats_row(model: str, t: Tally) -> tuple[str, ...]:
    return (
        model,
        str(t.recordings),
        human_size(t.size),
        f"{t.input_tokens:,}",
        f"{t.cached_input_tokens:,}",
        f"{t.output_tokens:,}",
        t.cost_cell(),
    )


def cmd_migrate(args: argparse.Namespace, project: Project) -> int:
    directory = project.existing_directory()
    results = migrate_directory(directory, project.prices, dry_run=args.dry_run)
    failed = [r for r in results if r.error is not None]
    for result in results:
        if result.error is not None:
            print(f"{display(result.path)}: not migrated: {result.error}")
        else:
            verb = "would migrate" if args.dry_run else "migrated"
            print(f"{verb} {display(result.path)} (schema {result.old_version} -> {SCHEMA_VERSION})")
    done = len(results) - len(failed)
    if args.dry_run:
        print(
            f"would migrate {plural(done, 'recording')} in {display(directory)}; "
            "nothing was written (dry run)"
        )
    else:
        print(f"{plural(done, 'recording')} migrated to schema {SCHEMA_VERSION} in {display(directory)}")
    return 1 if failed else 0
