"""``promptcache prune``: delete the recordings a report of a full run says no test used."""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

from ..store.files import SUFFIX, CorruptRecording, read_recording
from ..words import plural
from .project import CliError, Project
from .render import display, human_size

KEY_RE = re.compile(r"[0-9a-f]{64}")


def cmd_prune(args: argparse.Namespace, project: Project) -> int:
    report_path = Path(args.unused)
    try:
        report = json.loads(report_path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise CliError(f"cannot read the report {report_path}: {exc.strerror or exc}") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise CliError(f"the report {report_path} is not JSON: {exc}") from None
    if not isinstance(report, dict) or "unused_recordings" not in report:
        raise CliError(
            f"the report {report_path} has no unused_recordings list; write one with a full run: "
            "pytest --promptcache-report=REPORT.json (no -k, no test selection)"
        )
    if report.get("unused_recordings_complete") is False:
        raise CliError(
            f"the report {report_path} comes from a partial run (unused_recordings_complete is false): "
            "recordings the other tests use would look unused. Prune only from a report of a full run"
        )
    listed = report["unused_recordings"]
    if not isinstance(listed, list) or not all(isinstance(k, str) for k in listed):
        raise CliError(f"the report {report_path}: unused_recordings is not a list of keys")
    keys = [k.removesuffix(SUFFIX) for k in listed]
    # A key becomes a path; anything but a SHA-256 could name a file outside the directory.
    bad = [k for k in keys if not KEY_RE.fullmatch(k)]
    if bad:
        raise CliError(
            f"the report {report_path} lists {len(bad)} entries that are not recording keys "
            f"(e.g. {bad[0]!r}); nothing was deleted"
        )
    directory = project.existing_directory()
    if not keys:
        print(f"{report_path} lists no unused recordings: nothing to delete")
        return 0
    verb = "would delete" if args.dry_run else "deleted"
    done, freed, missing = 0, 0, 0
    for key in dict.fromkeys(keys):
        path = directory / f"{key}{SUFFIX}"
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            missing += 1
            print(f"already gone: {display(path)}")
            continue
        test = _test_of(path)
        if not args.dry_run:
            try:
                path.unlink()
            except FileNotFoundError:
                missing += 1
                continue
        done += 1
        freed += size
        print(f"{verb} {display(path)}" + (f"  ({test})" if test else ""))
    tail = "; nothing was deleted (dry run)" if args.dry_run else ""
    gone = f", {missing} already gone" if missing else ""
    print(f"{verb} {plural(done, 'recording')} ({human_size(freed)}) from {display(directory)}{gone}{tail}")
    return 0


def _test_of(path: Path) -> str | None:
    try:
        return read_recording(path).meta.test
    except (CorruptRecording, OSError):
        return None
