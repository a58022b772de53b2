"""Tokens and dollars: per-call records, the session report model, and its renderings.

Replayed calls are priced lazily (once per recording, at its ``recorded_at``) so the replay path stays a
dict lookup; live calls are priced when they complete, because the budget needs the running total.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict

from .models import RecordedResponse, TokenUsage
from .prices import money
from .usage import PriceBook, measure

if TYPE_CHECKING:
    from .engine import CallEvent

REPORT_SCHEMA_VERSION: Literal[1] = 1
NO_MODEL = "(no model)"
NO_TEST = "(outside tests)"


class CallRecord(BaseModel):
    """One intercepted call as reports and the ``promptcache`` fixture see it."""

    model_config = ConfigDict(frozen=True)

    test: str | None
    outcome: str
    url: str
    model: str | None
    key: str | None = None
    status: int | None = None
    usage: TokenUsage | None = None
    cost_usd: float | None = None
    detail: str | None = None
    served_key: str | None = None
    similarity: float | None = None
    stale: bool = False
    recorded_at: datetime | None = None

    @property
    def used_key(self) -> str | None:
        """The recording this call used, if any: served (exactly or as a similar match) or saved."""
        if self.outcome == "replayed":
            return self.served_key or self.key
        if self.outcome == "recorded":
            return self.key
        return None

    @property
    def replayed(self) -> bool:
        return self.outcome == "replayed"

    @property
    def live(self) -> bool:
        return self.outcome in ("recorded", "live", "error")

    @property
    def succeeded(self) -> bool:
        return self.outcome in ("replayed", "recorded", "live") and (self.status or 200) < 400

    @property
    def priced(self) -> bool:
        return self.cost_usd is not None


class Bucket(BaseModel):
    calls: int = 0
    replayed: int = 0
    live: int = 0
    recorded: int = 0
    misses: int = 0
    errors: int = 0
    input_tokens: int = 0
    cached_input_tokens: int = 0
    cache_write_tokens: int = 0
    output_tokens: int = 0
    spent_usd: float = 0.0
    saved_usd: float = 0.0
    calls_without_usage: int = 0
    unpriced_calls: int = 0

    def add(self, call: CallRecord) -> None:
        self.calls += 1
        if call.replayed:
            self.replayed += 1
        elif call.live:
            self.live += 1
            self.recorded += call.outcome == "recorded"
            self.errors += call.outcome == "error"
        else:  # a miss, or a call the budget refused: neither served nor sent
            self.misses += 1
        if not call.succeeded:
            return
        if call.usage is None:
            self.calls_without_usage += 1
            return
        self.input_tokens += call.usage.input_tokens
        self.cached_input_tokens += call.usage.cached_input_tokens
        self.cache_write_tokens += call.usage.cache_write_tokens
        self.output_tokens += call.usage.output_tokens
        if call.cost_usd is None:
            self.unpriced_calls += 1
        elif call.replayed:
            self.saved_usd = money(Decimal(str(self.saved_usd)) + Decimal(str(call.cost_usd)))
        else:
            self.spent_usd = money(Decimal(str(self.spent_usd)) + Decimal(str(call.cost_usd)))

    @property
    def cost_usd(self) -> float:
        return self.spent_usd + self.saved_usd


class Budget(BaseModel):
    limit_usd: float
    spent_usd: float
    blocked_calls: int


class UnsavedCall(BaseModel):
    test: str | None
    url: str
    reason: str


class Substitution(BaseModel):
    test: str | None
    requested_key: str
    served_key: str
    similarity: float


class StaleRecording(BaseModel):
    key: str
    test: str | None
    recorded_at: datetime | None


class Report(BaseModel):
    schema_version: Literal[1] = REPORT_SCHEMA_VERSION
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
    similar_substitutions: list[Substitution] = []
    stale_recordings: list[StaleRecording] = []

    @classmethod
    def build(
        cls,
        mode: str,
        calls: Iterable[CallRecord],
        budget_usd: float | None = None,
        *,
        cassette_dir: str | None = None,
        recorded_keys: Iterable[str] | None = None,
        incomplete_because: str | None = "not checked",
    ) -> Report:
        totals = Bucket()
        by_model: dict[str, Bucket] = {}
        by_test: dict[str, Bucket] = {}
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
            totals.add(call)
            by_model.setdefault(call.model or NO_MODEL, Bucket()).add(call)
            by_test.setdefault(call.test or NO_TEST, Bucket()).add(call)
            if call.succeeded and call.usage is not None and call.cost_usd is None:
                unpriced.add(call.model or NO_MODEL)
            if call.outcome == "live" and call.detail and call.detail.startswith("not saved"):
                not_saved.append(UnsavedCall(test=call.test, url=call.url, reason=call.detail))
            blocked += call.outcome == "blocked"
        budget = None
        if budget_usd is not None:
            budget = Budget(limit_usd=budget_usd, spent_usd=totals.spent_usd, blocked_calls=blocked)
        unused: list[str] = []
        if incomplete_because is None and recorded_keys is not None:
            unused = sorted(set(recorded_keys) - used)
        return cls(
            mode=mode,
            cassette_dir=cassette_dir,
            unused_recordings=unused,
            unused_recordings_complete=incomplete_because is None,
            unused_recordings_why_incomplete=incomplete_because,
            similar_substitutions=sorted(substitutions, key=lambda s: (s.test or "", s.requested_key)),
            stale_recordings=sorted(stale.values(), key=lambda s: s.key),
            totals=totals,
            by_model=dict(sorted(by_model.items())),
            by_test=dict(sorted(by_test.items())),
            unpriced_models=sorted(unpriced),
            not_saved=sorted(not_saved, key=lambda u: (u.test or "", u.url, u.reason)),
            budget=budget,
        )

    @property
    def budget_exceeded(self) -> bool:
        return self.budget is not None and self.budget.blocked_calls > 0


class Ledger:
    """Every call of the session, priced when needed."""

    def __init__(self, prices: PriceBook, on_live_cost: Callable[[float], object] | None = None) -> None:
        self.prices = prices
        self._on_live_cost = on_live_cost
        self._replay_memo: dict[str, tuple[TokenUsage | None, float | None]] = {}

    def add(self, event: CallEvent) -> None:
        if event.outcome.value in ("recorded", "live"):
            # Priced now, at the time of the call: the budget needs it and prices change over time.
            event.record = record = self._price(event, datetime.now(UTC))
            if record.cost_usd is not None and self._on_live_cost is not None:
                self._on_live_cost(record.cost_usd)
        elif event.outcome.value == "replayed" and event.recording is not None:
            # Usage and cost once per recording, now, so the event need not hold the parsed recording
            # until the report: a session replaying 20,000 recordings would keep them all in memory.
            recording = event.recording
            if recording.key not in self._replay_memo:
                priced = self._price(event, recording.meta.recorded_at)
                self._replay_memo[recording.key] = (priced.usage, priced.cost_usd)
            event.recorded_at = recording.meta.recorded_at
            event.recording = None

    def record_of(self, event: CallEvent) -> CallRecord:
        if event.record is not None:
            return event.record
        if event.outcome.value == "replayed":
            memo = self._replay_memo.get(event.served_key or event.key or "")
            if memo is not None:
                return self._record(event, *memo)
        if event.outcome.value == "replayed" and event.recording is not None:
            memo = self._replay_memo.get(event.recording.key)
            if memo is None:
                priced = self._price(event, event.recording.meta.recorded_at)
                memo = self._replay_memo[event.recording.key] = (priced.usage, priced.cost_usd)
            return self._record(event, *memo)
        return self._record(event, None, None)

    def _price(self, event: CallEvent, at: datetime) -> CallRecord:
        recording = event.recording
        if (
            recording is not None
            and recording.schema_version >= 2
            and not self.prices.has_override((event.model,))
        ):
            # Priced when it was recorded; kept in the file so replays need not price it again.
            return self._record(event, recording.meta.usage, recording.meta.cost_usd)
        response = recording.response if recording is not None else event.response
        if response is None:
            return self._record(event, None, None)
        path = recording.request.path if recording is not None else _path(event.url)
        usage, cost = self.measure(response, path, event.model, event.url, at)
        return self._record(event, usage, cost)

    def measure(
        self, response: RecordedResponse, path: str, model: str | None, url: str, at: datetime
    ) -> tuple[TokenUsage | None, float | None]:
        return measure(response, path, model, url, at, self.prices)

    @staticmethod
    def _record(event: CallEvent, usage: TokenUsage | None, cost: float | None) -> CallRecord:
        return CallRecord(
            test=event.test,
            outcome=event.outcome.value,
            url=event.url,
            model=event.model,
            key=event.key,
            status=event.status,
            usage=usage,
            cost_usd=cost,
            detail=event.detail,
            served_key=event.served_key,
            similarity=event.similarity,
            stale=event.stale,
            recorded_at=event.recorded_at
            or (event.recording.meta.recorded_at if event.recording is not None else None),
        )


def _path(url: str) -> str:
    rest = url.split("://", 1)[-1]
    return "/" + rest.split("/", 1)[1].split("?", 1)[0] if "/" in rest else "/"


@dataclass
class TestCalls:
    """What the ``promptcache`` fixture gives a test: its own calls so far, with usage and cost."""

    __test__ = False

    _records: Callable[[], Iterable[CallRecord]]

    @property
    def calls(self) -> list[CallRecord]:
        return list(self._records())

    @property
    def input_tokens(self) -> int:
        return sum(c.usage.input_tokens for c in self.calls if c.usage)

    @property
    def output_tokens(self) -> int:
        return sum(c.usage.output_tokens for c in self.calls if c.usage)

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    @property
    def cost_usd(self) -> float:
        return money(sum((Decimal(str(c.cost_usd)) for c in self.calls if c.cost_usd), Decimal(0)))


# -- renderings ----------------------------------------------------------------------------------------


def usd(value: float) -> str:
    # Test suites cost fractions of a cent per call: keep enough digits to tell them apart, and never
    # print a real cost as zero.
    if 0 < value < 0.000001:
        return f"${value:.1e}"
    if 0 < value < 0.01:
        return f"${value:.6f}"
    return f"${value:,.4f}"


def _usd_cell(value: float, bucket: Bucket) -> str:
    """A money cell that does not show a silent zero for calls nobody could price."""
    if value == 0 and bucket.unpriced_calls:
        return "unpriced"
    return usd(value)


def _tokens(b: Bucket) -> str:
    cached = f" ({b.cached_input_tokens:,} cached)" if b.cached_input_tokens else ""
    return f"{b.input_tokens:,} in{cached}, {b.output_tokens:,} out"


Line = tuple[str, str | None]  # text and an optional colour name


def terminal_lines(report: Report, verbose: bool) -> Iterator[Line]:
    t = report.totals
    parts = [f"{t.replayed} replayed"] if t.replayed else []
    if t.live:
        detail = [f"{n} {what}" for n, what in ((t.recorded, "recorded"), (t.errors, "failed")) if n]
        parts.append(f"{t.live} live" + (f" ({', '.join(detail)})" if detail else ""))
    if t.misses:
        parts.append(f"{t.misses} missed")
    yield f"mode {report.mode}: {t.calls} LLM calls: {', '.join(parts)}", None
    yield f"tokens: {_tokens(t)}", None
    spent_colour = "yellow" if t.spent_usd else "green"
    yield f"spent {usd(t.spent_usd)} on live calls, saved {usd(t.saved_usd)} by replay", spent_colour
    if t.calls_without_usage:
        no_usage = f"{t.calls_without_usage} calls carried no usage (e.g. streams without include_usage)"
        yield no_usage + ": not in the totals", None
    if report.unpriced_models:
        names = ", ".join(report.unpriced_models)
        yield (
            (
                f"unpriced models: {names} ({t.unpriced_calls} calls; tokens counted, no dollars): "
                "add them to ini promptcache_prices"
            ),
            "yellow",
        )
    if report.not_saved:
        yield f"{len(report.not_saved)} live calls were not saved (their body never completed)", "yellow"
    for sub in report.similar_substitutions:
        yield (
            (
                f"similar match: {sub.test}: served {sub.served_key[:12]} for {sub.requested_key[:12]} "
                f"(similarity {sub.similarity:.2f})"
            ),
            "yellow",
        )
    if report.stale_recordings:
        yield (
            (
                f"{len(report.stale_recordings)} stale recordings served (older than max-age): "
                "refresh them with --promptcache=rewrite, or promptcache_on_expiry = rerecord and "
                "--promptcache=record"
            ),
            "yellow",
        )
    if report.unused_recordings:
        yield (
            (
                f"{len(report.unused_recordings)} recordings unused by this run of the whole suite: "
                "--promptcache-prune deletes them"
            ),
            None,
        )
    if report.budget is not None and report.budget_exceeded:
        limit, blocked = usd(report.budget.limit_usd), report.budget.blocked_calls
        yield f"budget of {limit} reached: {blocked} live calls refused", "red"
    if not verbose:
        yield "(-v shows the per-model table and the most expensive tests)", None
        return
    yield "", None
    width = max([len(m) for m in report.by_model] + [5])
    columns = (("calls", 5), ("input", 9), ("cached", 8), ("output", 8), ("spent", 9), ("saved", 9))
    yield f"{'model':<{width}}" + "".join(f"  {name:>{w}}" for name, w in columns), None
    for model, b in report.by_model.items():
        cells = (
            b.calls,
            f"{b.input_tokens:,}",
            f"{b.cached_input_tokens:,}",
            f"{b.output_tokens:,}",
            _usd_cell(b.spent_usd, b) if b.live else usd(b.spent_usd),
            _usd_cell(b.saved_usd, b) if b.replayed else usd(b.saved_usd),
        )
        yield (
            f"{model:<{width}}" + "".join(f"  {c:>{w}}" for c, (_, w) in zip(cells, columns, strict=True)),
            None,
        )
    top = sorted(report.by_test.items(), key=lambda kv: -kv[1].cost_usd)[:5]
    top = [(name, b) for name, b in top if b.cost_usd > 0]
    if top:
        yield "", None
        yield "most expensive tests (live + replayed cost):", None
        for name, b in top:
            yield f"  {usd(b.cost_usd):>9}  {name}", None
    for unsaved in report.not_saved:
        yield f"not saved: {unsaved.test}: {unsaved.url}: {unsaved.reason}", "yellow"
    for old in report.stale_recordings:
        when = f"{old.recorded_at:%Y-%m-%d}" if old.recorded_at else "?"
        yield f"stale: {old.key[:12]} recorded {when}, used by {old.test}", "yellow"
    for key in report.unused_recordings:
        yield f"unused: {key}", None


def markdown(report: Report) -> str:
    t = report.totals
    lines = [
        "### promptcache",
        "",
        f"Mode `{report.mode}`: **{t.calls}** LLM calls, {t.replayed} replayed, {t.live} live "
        f"({t.recorded} recorded), {t.misses} missed, {t.errors} failed.",
        f"Tokens: {_tokens(t)}. Spent **{usd(t.spent_usd)}** on live calls; replay saved "
        f"**{usd(t.saved_usd)}**.",
        "",
        "| model | calls | replayed | live | input | cached | output | spent | saved |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for model, b in report.by_model.items():
        lines.append(
            f"| {model} | {b.calls} | {b.replayed} | {b.live} | {b.input_tokens:,} | "
            f"{b.cached_input_tokens:,} | {b.output_tokens:,} | {usd(b.spent_usd)} | {usd(b.saved_usd)} |"
        )
    if report.unpriced_models:
        lines += ["", f"Unpriced models (tokens counted, no dollars): {', '.join(report.unpriced_models)}."]
    if t.calls_without_usage:
        lines += ["", f"{t.calls_without_usage} calls carried no usage and are not in the totals."]
    if report.budget_exceeded and report.budget is not None:
        lines += [
            "",
            f"**Budget of {usd(report.budget.limit_usd)} reached**: {report.budget.blocked_calls} "
            "live calls refused.",
        ]
    return "\n".join(lines) + "\n"


def append_github_summary(text: str) -> None:
    path = os.environ.get("GITHUB_STEP_SUMMARY")
    if path:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(text)
