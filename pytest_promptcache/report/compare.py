"""The cost of this run against a baseline report (``--promptcache-compare=BASELINE.json``): what
changed, per test and per model, and by how many tokens.

Cost here is what the calls cost when made: live calls at today's prices, replayed ones at their
recording's, estimates included. A replayed suite's cost is its recorded cost, so two replays compare
what the recordings on two branches cost.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from ..prices import usd
from ..safefile import UnsafeFile, read_regular_file
from ..sums import Bucket, add_usd
from ..words import plural

# A report of a suite of 100,000 tests is a few tens of MiB.
MAX_BASELINE_BYTES = 64 * 1024 * 1024
KNOWN_REPORT_VERSIONS = (1, 2)
# Changes the JSON report lists, at most, the largest first.
MAX_CHANGES = 200


class BaselineError(Exception):
    """A baseline that cannot be compared against; the message says what to give instead."""


class Baseline(BaseModel):
    """What a comparison needs of a report, any schema version (missing fields are zero)."""

    model_config = ConfigDict(defer_build=True)

    schema_version: int
    mode: str = "?"
    totals: Bucket
    by_model: dict[str, Bucket] = {}
    by_test: dict[str, Bucket] = {}


class Change(BaseModel):
    model_config = ConfigDict(defer_build=True)

    name: str
    status: Literal["changed", "added", "removed"]
    before_usd: float
    after_usd: float
    delta_usd: float
    delta_pct: float | None  # None: nothing to compare a share against
    input_tokens_delta: int  # reported and estimated input tokens
    output_tokens_delta: int
    calls_delta: int


class Comparison(BaseModel):
    model_config = ConfigDict(defer_build=True)

    baseline: str
    baseline_mode: str
    before_usd: float
    after_usd: float
    delta_usd: float
    delta_pct: float | None
    by_test: list[Change] = []
    by_model: list[Change] = []
    unchanged_tests: int = 0


def load_baseline(path: Path) -> Baseline:
    fix = "give --promptcache-compare a report written by --promptcache-report"
    try:
        data = read_regular_file(path, max_size=MAX_BASELINE_BYTES)
    except UnsafeFile as exc:
        raise BaselineError(f"cannot read the baseline {path}: {exc.reason}; {fix}") from None
    except OSError as exc:
        raise BaselineError(f"cannot read the baseline {path}: {exc.strerror or exc}; {fix}") from None
    try:
        baseline = Baseline.model_validate_json(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "the file"
        raise BaselineError(
            f"the baseline {path} is not a promptcache report ({where}: {first['msg']}); {fix}"
        ) from None
    if baseline.schema_version not in KNOWN_REPORT_VERSIONS:
        raise BaselineError(
            f"the baseline {path} has report schema_version {baseline.schema_version}, which this version "
            f"does not know ({', '.join(map(str, KNOWN_REPORT_VERSIONS))}); upgrade pytest-promptcache"
        )
    return baseline


def _pct(before: float, delta: float) -> float | None:
    return round(delta / before * 100, 1) if before else None


def _change(name: str, before: Bucket | None, after: Bucket | None) -> Change:
    empty = Bucket()
    b, a = before or empty, after or empty
    delta = add_usd(a.total_cost_usd, -b.total_cost_usd)
    status: Literal["changed", "added", "removed"] = (
        "added" if before is None else "removed" if after is None else "changed"
    )
    return Change(
        name=name,
        status=status,
        before_usd=b.total_cost_usd,
        after_usd=a.total_cost_usd,
        delta_usd=delta,
        delta_pct=_pct(b.total_cost_usd, delta),
        input_tokens_delta=a.all_input_tokens - b.all_input_tokens,
        output_tokens_delta=(a.output_tokens + a.estimated.output_tokens)
        - (b.output_tokens + b.estimated.output_tokens),
        calls_delta=a.calls - b.calls,
    )


def _changes(before: dict[str, Bucket], after: dict[str, Bucket]) -> tuple[list[Change], int]:
    changes: list[Change] = []
    unchanged = 0
    for name in sorted(before.keys() | after.keys()):
        change = _change(name, before.get(name), after.get(name))
        if change.delta_usd or change.input_tokens_delta or change.output_tokens_delta or change.calls_delta:
            changes.append(change)
        else:
            unchanged += 1
    changes.sort(key=lambda c: (-abs(c.delta_usd), -abs(c.input_tokens_delta), c.name))
    return changes[:MAX_CHANGES], unchanged


def compare(
    totals: Bucket, by_model: dict[str, Bucket], by_test: dict[str, Bucket], baseline: Baseline, path: str
) -> Comparison:
    total = _change("(suite)", baseline.totals, totals)
    tests, unchanged = _changes(baseline.by_test, by_test)
    models, _ = _changes(baseline.by_model, by_model)
    return Comparison(
        baseline=path,
        baseline_mode=baseline.mode,
        before_usd=total.before_usd,
        after_usd=total.after_usd,
        delta_usd=total.delta_usd,
        delta_pct=total.delta_pct,
        by_test=tests,
        by_model=models,
        unchanged_tests=unchanged,
    )


def signed_usd(value: float) -> str:
    return ("-" if value < 0 else "+") + usd(abs(value))


def _pct_text(pct: float | None) -> str:
    if pct is None:
        return ""
    # Past +1,000% a percentage is harder to read than the factor it stands for.
    if pct >= 1000:
        return f" ({1 + pct / 100:,.0f}x)"
    return f" ({pct:+.1f}%)"


def details(c: Change) -> str:
    """What changed besides the money: tokens, calls, a test that is new or gone."""
    parts = ["new" if c.status == "added" else "gone"] if c.status != "changed" else []
    if c.input_tokens_delta:
        parts.append(f"input {c.input_tokens_delta:+,} tokens")
    if c.output_tokens_delta:
        parts.append(f"output {c.output_tokens_delta:+,} tokens")
    if c.calls_delta:
        sign = "+" if c.calls_delta > 0 else "-"
        parts.append(sign + plural(abs(c.calls_delta), "call"))
    return ", ".join(parts)


def amount_text(c: Change) -> str:
    return f"{signed_usd(c.delta_usd)}{_pct_text(c.delta_pct)}"


def change_text(c: Change) -> str:
    more = details(c)
    return f"{amount_text(c)} {c.name}" + (f": {more}" if more else "")


def comparison_lines(c: Comparison, limit: int = 5) -> Iterator[str]:
    yield (
        f"cost against {c.baseline} ({c.baseline_mode}): {usd(c.before_usd)} -> {usd(c.after_usd)} per run, "
        f"{signed_usd(c.delta_usd)}{_pct_text(c.delta_pct)}"
    )
    for change in c.by_test[:limit]:
        yield f"  {change_text(change)}"
    if len(c.by_test) > limit:
        more = plural(len(c.by_test) - limit, "more test", "more tests")
        yield f"  ... and {more} changed (the JSON report lists them)"
    if c.by_model:
        models = ", ".join(f"{m.name} {signed_usd(m.delta_usd)}{_pct_text(m.delta_pct)}" for m in c.by_model)
        yield f"  by model: {models}"
