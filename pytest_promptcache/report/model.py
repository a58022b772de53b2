"""The session report: what the JSON file holds (schema-versioned), built from the calls of a run."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict

from ..findings import Advice
from ..ledger import NO_MODEL, NOT_SAVED, Call, Outcome
from ..settings import Mode
from ..sums import Bucket, summarize
from .compare import Comparison
from .fleet import SharedReport

# 2: calls to free endpoints are ``free_calls``, no longer ``calls_without_usage``; responses without
# usage are estimated (``estimated`` in every bucket) and so leave ``calls_without_usage`` too; buckets
# have ``cache_saved_usd``; ``advice`` and ``comparison``. Every field of 1 is still there.
REPORT_SCHEMA_VERSION: Literal[2] = 2
# The modes in which a live call is meant to be saved.
RECORDING_MODES = frozenset({Mode.RECORD.value, Mode.REWRITE.value})


class Budget(BaseModel):
    model_config = ConfigDict(defer_build=True)

    limit_usd: float
    spent_usd: float
    blocked_calls: int


class UnsavedCall(BaseModel):
    model_config = ConfigDict(defer_build=True)

    test: str | None
    url: str
    reason: str


class Substitution(BaseModel):
    model_config = ConfigDict(defer_build=True)

    test: str | None
    requested_key: str
    served_key: str
    similarity: float


class StaleRecording(BaseModel):
    model_config = ConfigDict(defer_build=True)

    key: str
    test: str | None
    recorded_at: datetime | None


class Report(BaseModel):
    model_config = ConfigDict(defer_build=True)

    schema_version: Literal[2] = REPORT_SCHEMA_VERSION
    mode: str
    cassette_dir: str | None = None
    totals: Bucket
    by_model: dict[str, Bucket]
    by_test: dict[str, Bucket]
    unpriced_models: list[str] = []
    not_saved: list[UnsavedCall] = []
    budget: Budget | None = None
    # Recordings no test used. Only listed after a run of the whole suite, which `complete` says; `why`
    # says what made the run partial (then the list is empty: nothing needed may ever be pruned).
    unused_recordings: list[str] = []
    unused_recordings_complete: bool = False
    unused_recordings_why_incomplete: str | None = None
    # What --promptcache-prune deleted; None when it did not run (or refused).
    pruned_recordings: list[str] | None = None
    similar_substitutions: list[Substitution] = []
    stale_recordings: list[StaleRecording] = []
    # The caching advisor on the recordings this run used (when a report file or -v asked for it), and
    # the cost against --promptcache-compare's baseline.
    advice: Advice | None = None
    comparison: Comparison | None = None
    # With promptcache_shared: hits per tier, machines, and the shared tier's notices.
    shared: SharedReport | None = None

    @classmethod
    def build(
        cls,
        mode: str,
        calls: Iterable[Call],
        budget_usd: float | None = None,
        *,
        cassette_dir: str | None = None,
        recorded_keys: Iterable[str] | None = None,
        incomplete_because: str | None = "not checked",
        shared: SharedReport | None = None,
    ) -> Report:
        calls = list(calls)
        buckets = summarize(calls)
        recording = mode in RECORDING_MODES
        unpriced: set[str] = set()
        not_saved: list[UnsavedCall] = []
        used: set[str] = set()
        substitutions: list[Substitution] = []
        stale: dict[str, StaleRecording] = {}
        blocked = 0
        for call in calls:
            if call.used_key is not None:
                used.add(call.used_key)
            if call.served_key is not None and call.key is not None and call.similarity is not None:
                substitutions.append(
                    Substitution(
                        test=call.test,
                        requested_key=call.key,
                        served_key=call.served_key,
                        similarity=call.similarity,
                    )
                )
            if call.stale and call.used_key is not None:
                stale[call.used_key] = StaleRecording(
                    key=call.used_key, test=call.test, recorded_at=call.recorded_at
                )
            if call.succeeded and call.usage is not None and call.cost_usd is None:
                unpriced.add(call.model or NO_MODEL)
            if _not_saved(call, recording):
                reason = call.detail or (f"HTTP {call.status}" if call.status else "not saved")
                not_saved.append(UnsavedCall(test=call.test, url=call.url, reason=reason))
            blocked += call.outcome is Outcome.BLOCKED
        budget = None
        if budget_usd is not None:
            budget = Budget(limit_usd=budget_usd, spent_usd=buckets.totals.spent_usd, blocked_calls=blocked)
        unused: list[str] = []
        if incomplete_because is None and recorded_keys is not None:
            unused = sorted(set(recorded_keys) - used)
        # Built, not validated (every value is of its field's type, built above): a session that
        # writes no JSON report never builds the report models' schemas (``defer_build``), ~8 ms.
        return cls.model_construct(
            mode=mode,
            cassette_dir=cassette_dir,
            unused_recordings=unused,
            unused_recordings_complete=incomplete_because is None,
            unused_recordings_why_incomplete=incomplete_because,
            similar_substitutions=sorted(substitutions, key=lambda s: (s.test or "", s.requested_key)),
            stale_recordings=sorted(stale.values(), key=lambda s: s.key),
            totals=buckets.totals,
            by_model=buckets.by_model,
            by_test=buckets.by_test,
            unpriced_models=sorted(unpriced),
            not_saved=sorted(not_saved, key=lambda u: (u.test or "", u.url, u.reason)),
            budget=budget,
            shared=shared,
        )

    @property
    def budget_exceeded(self) -> bool:
        return self.budget is not None and self.budget.blocked_calls > 0

    @property
    def nothing_saved(self) -> bool:
        """A record (or rewrite) run that needed live calls and saved none of them: it recorded nothing
        a later replay could use, however its tests went (code that catches the SDK's error passes)."""
        return self.mode in RECORDING_MODES and self.totals.live > 0 and self.totals.recorded == 0


def _not_saved(call: Call, recording: bool) -> bool:
    """A live call that will miss in replay: its body never completed, or, in a run that records, it
    failed (a transport error, or a status that is not recorded)."""
    if call.outcome is Outcome.LIVE:
        return bool(call.detail and call.detail.startswith(NOT_SAVED))
    return recording and call.outcome is Outcome.ERROR
