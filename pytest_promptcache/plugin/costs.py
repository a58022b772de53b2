"""What the plugin adds to the report about cost: the caching advisor, the comparison with a baseline,
per-test JUnit XML properties, and the HTML page."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from ..session import CacheSession
from .stash import BASELINE_KEY

if TYPE_CHECKING:
    from collections.abc import Sequence

    from ..ledger import Call, CallEvent
    from ..report.model import Report

REPORT_OPTIONS = ("promptcache_report", "promptcache_report_md", "promptcache_report_html")
# JUnit XML property names, per test that made LLM calls: CI dashboards trend them.
PROPERTY_PREFIX = "promptcache_"


def load_baseline(config: pytest.Config) -> None:
    """Read --promptcache-compare's baseline before any test runs: a wrong path is a usage error now,
    not a line after the whole suite ran."""
    path = config.getoption("promptcache_compare")
    if not path:
        return
    from ..report.compare import BaselineError
    from ..report.compare import load_baseline as load

    try:
        config.stash[BASELINE_KEY] = (path, load(config.invocation_params.dir / path))
    except BaselineError as exc:
        raise pytest.UsageError(f"pytest-promptcache: {exc}") from None


def runs_tests(config: pytest.Config) -> bool:
    """False for an xdist controller, whose workers run the tests (and make the calls)."""
    return hasattr(config, "workerinput") or not config.getoption("numprocesses", None)


def wants_advice(config: pytest.Config) -> bool:
    # Reading the recordings costs a moment at the session's end: only when someone will read advice.
    return config.get_verbosity() > 0 or any(config.getoption(name) for name in REPORT_OPTIONS)


def add_cost_sections(
    config: pytest.Config, session: CacheSession, report: Report, calls: Sequence[Call]
) -> None:
    baseline = config.stash.get(BASELINE_KEY, None)
    if baseline is not None:
        from ..report.compare import compare

        path, loaded = baseline
        report.comparison = compare(report.totals, report.by_model, report.by_test, loaded, path)
    if report.totals.calls and wants_advice(config):
        from ..advice import advise_directory
        from ..usage import PriceBook

        sent: dict[str, tuple[int, set[str]]] = {}
        for call in calls:
            key = call.used_key
            if key is not None:
                times, tests = sent.get(key, (0, set()))
                sent[key] = (times + 1, tests | ({call.test} if call.test else set()))
        settings = session.settings
        report.advice = advise_directory(
            settings.cassette_dir,
            PriceBook(settings.prices),
            datetime.now(UTC),
            sent=sent,
            max_size=settings.limits.max_recording_size,
        )


def _number(value: float) -> str:
    return f"{value:.10f}".rstrip("0").rstrip(".") or "0"


def add_junit_properties(item: pytest.Item, events: list[CallEvent]) -> None:
    """The test's tokens and cost as ``record_property`` would add them: JUnit XML reports them, and
    xdist carries them to the controller with the test's report."""
    if not events:
        return
    from ..sums import total

    bucket = total(events)
    est = bucket.estimated
    properties = {
        "calls": str(bucket.calls),
        "replayed": str(bucket.replayed),
        "live": str(bucket.live),
        "input_tokens": str(bucket.input_tokens + est.input_tokens),
        "cached_input_tokens": str(bucket.cached_input_tokens),
        "output_tokens": str(bucket.output_tokens + est.output_tokens),
        "cost_usd": _number(bucket.total_cost_usd),
        "estimated_calls": str(est.calls),
    }
    item.user_properties.extend((PROPERTY_PREFIX + name, value) for name, value in properties.items())


def write_html(path: Path, report: Report) -> None:
    from ..report.html import html
    from ..store.files import write_atomic

    write_atomic(path, html(report))
