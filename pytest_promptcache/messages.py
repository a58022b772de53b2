"""What a test that cannot be served is told: one place for the texts of refusals the engine makes
(stale recording, budget, pacing, a stuck identical call), so they read alike."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

from .prices import usd
from .settings import Mode
from .words import plural


def _age(value: timedelta | None) -> str:
    if value is None:
        return "-"
    if value.days and not value.seconds:
        return f"{value.days}d"
    return f"{value.total_seconds() / 3600:g}h"


def stale(
    *,
    mode: Mode,
    path: Path,
    recorded_at: datetime,
    age: timedelta,
    recorded_by: str,
    max_age: timedelta | None,
    command: str,
) -> str:
    return (
        f"promptcache: the recording for this request is stale (mode: {mode.value})\n"
        f"  recording: {path}\n"
        f"  recorded:  {recorded_at:%Y-%m-%d %H:%M} UTC, {plural(age.days, 'day')} ago, by {recorded_by}\n"
        f"  max-age:   {_age(max_age)} (promptcache_on_expiry = fail)\n"
        "\nTo refresh it, run with the API reachable and its key set:\n"
        f"  {command}"
    )


def budget(url: str, *, spent: float, budget: float) -> str:
    return (
        f"promptcache: budget reached, live call refused: {url}\n"
        f"  live calls in this session have cost {usd(spent)}; "
        f"the budget (--promptcache-budget / promptcache_budget) is {usd(budget)}.\n"
        "  Raise the budget, or record fewer tests at a time."
    )


def pacing(netloc: str, wait: float, *, max_wait: float, rpm: int | None) -> str:
    return (
        f"promptcache: pacing would hold this call {wait:.0f} s, longer than "
        f"promptcache_record_max_wait ({max_wait:g} s): more calls to {netloc} are "
        f"queued than promptcache_record_rpm = {rpm} lets through in that time.\n"
        "  It was not sent. Record fewer tests at a time (fewer xdist workers), raise the rpm/tpm limits "
        "if your provider allows, or raise promptcache_record_max_wait."
    )


def waited_too_long(timeout: float, method: str, url: str, key: str, holder: str) -> str:
    return (
        "promptcache: gave up waiting for an identical call in flight after "
        f"{timeout:g} s (promptcache_flight_timeout)\n"
        f"  request: {method} {url}\n"
        f"  key:     {key}\n"
        f"  held by: {holder}\n"
        "It was not sent. If the holder is stuck, stop it; if its call is only slow, raise "
        "promptcache_flight_timeout."
    )
