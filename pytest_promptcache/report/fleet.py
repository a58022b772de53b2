"""The shared tier's part of the report: hits per tier, which machine recorded what, what was served
from Redis but is not in the cassette directory, and whether Redis was there at all."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from pydantic import BaseModel, ConfigDict

from ..ledger import COPIED, Call, Outcome
from ..prices import usd
from ..sharedconf import SharedConfig

TIERS = ("memory", "cassettes", "shared")


class SharedServed(BaseModel):
    model_config = ConfigDict(defer_build=True)

    key: str
    test: str | None
    recorded_by: str | None


class SharedReport(BaseModel):
    model_config = ConfigDict(defer_build=True)

    url: str  # without its password
    prefix: str
    machine: str
    run_id: str | None = None
    hits_by_tier: dict[str, int]
    # Machine name -> keys it recorded, as far as this run saw: its own recordings, and the recorders of
    # what it was served from the shared tier.
    recorded_by_machine: dict[str, list[str]] = {}
    # Served from Redis in replay: commit them (a record run copies them into the cassette directory).
    not_in_cassettes: list[SharedServed] = []
    # Served from Redis in a record run and written to the cassette directory: commit them.
    copied_to_cassettes: list[SharedServed] = []
    # What the run (promptcache_run_id) has spent on live calls across all its machines, when known.
    run_spent_usd: float | None = None
    # The shared tier unavailable, or entries of it ignored: said once each.
    notices: list[str] = []

    @classmethod
    def build(
        cls,
        config: SharedConfig,
        calls: Iterable[Call],
        notices: Iterable[str],
        run_spent_usd: float | None = None,
    ) -> SharedReport:
        hits = dict.fromkeys(TIERS, 0)
        by_machine: dict[str, set[str]] = {}
        missing: dict[str, SharedServed] = {}
        copied: dict[str, SharedServed] = {}
        for call in calls:
            if call.outcome is Outcome.REPLAYED and call.tier in hits:
                hits[call.tier] += 1
            key = call.used_key
            if key is None or call.machine is None:
                continue
            by_machine.setdefault(call.machine, set()).add(key)
            if call.tier == "shared":
                served = SharedServed(key=key, test=call.test, recorded_by=call.machine)
                (copied if call.detail == COPIED else missing).setdefault(key, served)
        for key in copied:
            missing.pop(key, None)
        return cls(
            url=config.display,
            prefix=config.prefix,
            machine=config.machine,
            run_id=config.run_id,
            hits_by_tier=hits,
            recorded_by_machine={m: sorted(keys) for m, keys in sorted(by_machine.items())},
            not_in_cassettes=sorted(missing.values(), key=lambda s: s.key),
            copied_to_cassettes=sorted(copied.values(), key=lambda s: s.key),
            run_spent_usd=run_spent_usd,
            notices=list(dict.fromkeys(notices)),
        )


def shared_lines(shared: SharedReport, verbose: bool) -> Iterator[tuple[str, str | None]]:
    """Terminal lines: (text, colour)."""
    hits = ", ".join(f"{n} {tier}" for tier, n in shared.hits_by_tier.items())
    yield f"shared tier {shared.url} (machine {shared.machine}): replayed from {hits}", None
    if shared.run_id is not None and shared.run_spent_usd is not None:
        spent = usd(shared.run_spent_usd)
        yield f"run {shared.run_id}: {spent} spent on live calls by all its machines", None
    if shared.recorded_by_machine:
        counts = ", ".join(f"{m}: {len(keys)}" for m, keys in shared.recorded_by_machine.items())
        yield f"recordings used, by the machine that made them: {counts}", None
    if shared.not_in_cassettes:
        yield (
            f"{len(shared.not_in_cassettes)} recordings served from the shared tier, not in cassettes/: "
            "run pytest --promptcache=record to copy them there, then commit them",
            "yellow",
        )
    if shared.copied_to_cassettes:
        yield (
            f"{len(shared.copied_to_cassettes)} recordings copied from the shared tier into cassettes/: "
            "commit them",
            "yellow",
        )
    if verbose:
        for served in shared.not_in_cassettes:
            yield f"  not in cassettes/: {served.key[:12]} (recorded by {served.recorded_by})", None
    if shared.notices:
        yield shared.notices[0], "yellow"
        if len(shared.notices) > 1:
            yield f"  ({len(shared.notices) - 1} more notices in the JSON report's shared.notices)", None
