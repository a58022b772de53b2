"""Whether a run executed the whole suite: only then may recordings no test used be pruned."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from ..settings import Mode
from ..words import plural, was

if TYPE_CHECKING:
    from ..report.model import Report


@dataclasses.dataclass
class RunScope:
    """What tells whether this run executed the whole suite, so unused recordings may be pruned."""

    deselected: int = 0
    failed: int = 0
    skipped: int = 0
    collection_errors: int = 0


@dataclasses.dataclass
class PruneResult:
    deleted: list[str]
    refused: str | None = None


class ScopeTracker:
    """Counts what makes a run partial. A plugin object per session, since reports carry no config."""

    def __init__(self, scope: RunScope) -> None:
        self.scope = scope

    def pytest_deselected(self, items: list[pytest.Item]) -> None:
        self.scope.deselected += len(items)

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        if report.failed:
            self.scope.collection_errors += 1

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.failed:
            self.scope.failed += 1
        elif report.skipped:
            self.scope.skipped += 1


def narrowing_args(config: pytest.Config) -> str | None:
    """An argument that selects less than the whole suite: a node id, a file, or a directory below
    the rootdir and the testpaths."""
    if config.args_source is not pytest.Config.ArgsSource.ARGS:
        return None
    roots = {config.rootpath} | {(config.rootpath / p).resolve() for p in config.getini("testpaths")}
    for arg in config.args:
        if "::" in arg:
            return arg
        path = (config.invocation_params.dir / arg).resolve()
        if not path.is_dir() or not any(path == root or root.is_relative_to(path) for root in roots):
            return arg
    return None


def incomplete_because(session: pytest.Session, mode: Mode, scope: RunScope) -> str | None:
    config = session.config
    reasons = []
    if mode is Mode.OFF:
        reasons.append("mode off uses no recordings")
    if config.option.keyword:
        reasons.append(f"-k {config.option.keyword!r} selected a subset")
    if config.option.markexpr:
        reasons.append(f"-m {config.option.markexpr!r} selected a subset")
    narrowing = narrowing_args(config)
    if narrowing is not None:
        reasons.append(f"it ran only {narrowing!r}, not the whole suite")
    if scope.deselected:
        reasons.append(f"{plural(scope.deselected, 'test')} {was(scope.deselected)} deselected")
    if scope.collection_errors:
        reasons.append(f"{plural(scope.collection_errors, 'file')} failed to collect")
    if scope.failed:
        reasons.append(f"{plural(scope.failed, 'test')} failed or errored")
    if scope.skipped:
        reasons.append(f"{plural(scope.skipped, 'test')} {was(scope.skipped)} skipped")
    if session.shouldstop or session.shouldfail:
        reasons.append("the run stopped early")
    return "; ".join(reasons) or None


def prune(cassette_dir: Path, report: Report) -> PruneResult:
    from ..store.files import SUFFIX  # the store imports pydantic: not at start-up

    if not report.unused_recordings_complete:
        return PruneResult(deleted=[], refused=report.unused_recordings_why_incomplete)
    deleted = []
    for key in report.unused_recordings:
        try:
            (cassette_dir / f"{key}{SUFFIX}").unlink()
        except FileNotFoundError:
            continue
        deleted.append(key)
    return PruneResult(deleted=deleted)
