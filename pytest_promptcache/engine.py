"""What happens to one intercepted LLM call in each mode: look up, serve, miss, or go live and save.

The engine knows nothing of pytest or of which httpx module sent the request: the plugin tells it which
test is running (``begin_test``), the interceptor hands it a ``RawRequest`` and turns its answers into
responses of the right module.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from enum import StrEnum
from typing import Any

from . import __version__
from .context import Session, TestContext
from .flight import Flight, Flights, Wait
from .keys import HookError, Keyer, RawRequest, display_url
from .miss import miss_message, most_similar, nearest, record_command
from .models import CanonicalRequest, RecordedResponse, Recording, RecordingMeta, SSEEvent
from .report import CallRecord, Ledger
from .scrub import Scrubber
from .settings import Expiry, Mode, Settings
from .state import SharedState, default_state_root
from .store import CassetteStore, CorruptRecording, Entry
from .streams import WIRE_HEADERS, BodyRecorder, Replay, build_replay
from .usage import PriceBook

# Outcomes that depend on when or how often you ask: recording them would replay a bad day forever.
NOT_RECORDED_STATUSES = frozenset({401, 403, 408, 409, 429})
MAX_RETRY_WAIT = 120.0


def is_recordable_status(status: int) -> bool:
    return status < 500 and status not in NOT_RECORDED_STATUSES


class Outcome(StrEnum):
    REPLAYED = "replayed"  # served from a recording
    RECORDED = "recorded"  # went live and was saved
    LIVE = "live"  # went live, not saved (mode off, or the body never completed)
    MISS = "miss"  # replay found no usable recording
    ERROR = "error"  # went live and failed: transport error or a status that is not recorded
    BLOCKED = "blocked"  # would have gone live, but the session's budget was spent
    SHARED_FAILURE = "shared-failure"  # waited for an identical live call, which failed


@dataclass
class CallEvent:
    test: str | None
    mode: Mode
    outcome: Outcome
    url: str
    model: str | None
    key: str | None = None
    status: int | None = None
    # The recording served or saved, or the live body when nothing was saved: usage comes from here.
    recording: Recording | None = None
    response: RecordedResponse | None = None
    detail: str | None = None
    # Similar matching: the recording actually served, and how similar its request was.
    served_key: str | None = None
    similarity: float | None = None
    # A recording older than max-age was served (expiry "warn", or "rerecord" outside record mode).
    stale: bool = False
    # When the served or saved recording was made; kept after the ledger drops ``recording``.
    recorded_at: datetime | None = None
    # Usage and cost, filled in by the ledger (at once for live calls, lazily for replayed ones).
    record: CallRecord | None = None


class Engine:
    """What one call does. ``session`` says which test is running; without one (benchmarks, scripts),
    the engine makes its own and every call belongs to no test."""

    def __init__(
        self, settings: Settings, env: Mapping[str, str] | None = None, session: Session | None = None
    ) -> None:
        if session is None:
            session = Session(settings, env)
            session._engine = self
        self.session = session
        self.settings = settings
        env = session.env
        self.scrubber = Scrubber(
            secret_headers=settings.secret_headers,
            secret_params=settings.secret_params,
            patterns=settings.secret_patterns,
            env=env,
        )
        self.keyer = Keyer(settings, self.scrubber, session.default_rules)
        self.store = CassetteStore(settings.cassette_dir, settings.memory_size)
        self.state = SharedState(
            settings.state_dir or default_state_root(settings.cassette_dir),
            session_id=env.get("PYTEST_XDIST_TESTRUNUID") or None,
        )
        self.flights = Flights(self.state)
        self.ledger = Ledger(PriceBook(settings.prices), on_live_cost=self.state.add_spend)
        if settings.mode in (Mode.RECORD, Mode.REWRITE):
            self.store.sweep_temp_files()
        self.events: list[CallEvent] = []
        self._started_at = datetime.now(UTC)
        self._lock = threading.Lock()

    def engine(self) -> Engine:
        """An engine is its own source of engines, as far as the interceptor is concerned."""
        return self

    def handles(self, host: str, path: str) -> bool:
        return self.session.handles(host, path)

    def problem(self, ctx: TestContext, message: str) -> None:
        self.session.problem(ctx, message)

    # -- one call --------------------------------------------------------------------------------------

    def start(self, raw: RawRequest) -> Replay | LiveCall | Wait:
        """The response to serve, a live call the interceptor must send and report back on, or something
        to wait for (an identical call in flight) before asking again."""
        ctx = self.session.context
        self.scrubber.learn(raw.headers)
        url = display_url(raw, self.scrubber)
        if ctx.mode is Mode.OFF:
            if self._budget_spent():
                canonical = self.keyer.canonical(raw)
                return self._fail(ctx, Outcome.BLOCKED, url, canonical, None, self._budget_message(url))
            return LiveCall(self, ctx, url, raw.netloc, key=None, canonical=None, flight=None)
        try:
            key, canonical = self.keyer.key_for(raw, ctx.rules)
        except HookError as exc:
            return self._fail(ctx, Outcome.MISS, url, self.keyer.canonical(raw), None, f"promptcache: {exc}")
        served = self._serve_recorded(ctx, url, canonical, key)
        if served is not None:
            return served
        if ctx.mode is Mode.REPLAY:
            similar = self._serve_similar(ctx, url, canonical, key)
            if similar is not None:
                return similar
            message = self._miss_message(ctx, url, canonical, key)
            return self._fail(ctx, Outcome.MISS, url, canonical, key, message)
        if self._budget_spent():
            return self._fail(ctx, Outcome.BLOCKED, url, canonical, key, self._budget_message(url))
        claim = self.flights.claim(key)
        if isinstance(claim, Wait):
            return claim
        if claim is not None:
            # Leading now; the recording may have landed while this caller waited for the lead.
            served = self._serve_recorded(ctx, url, canonical, key)
            if served is not None:
                self.flights.finish(claim)
                return served
        return LiveCall(self, ctx, url, raw.netloc, key=key, canonical=canonical, flight=claim)

    def _serve_recorded(
        self, ctx: TestContext, url: str, canonical: CanonicalRequest, key: str
    ) -> Replay | None:
        """The recording for ``key`` if this mode serves it now: replay and record always, rewrite only
        once this session has rewritten it (so each request is paid for once)."""
        if ctx.mode is Mode.REWRITE and not self.state.was_rewritten(key):
            return None
        try:
            entry = self.store.get(key)
        except CorruptRecording as exc:
            if ctx.mode is Mode.REWRITE:
                return None
            return self._fail(ctx, Outcome.MISS, url, canonical, key, str(exc))
        if entry is None:
            return None
        stale = self._is_stale(entry.recording)
        if stale:
            expiry = self.settings.on_expiry
            if expiry is Expiry.FAIL:
                return self._fail(
                    ctx, Outcome.MISS, url, canonical, key, self._stale_message(ctx, entry.recording)
                )
            if expiry is Expiry.RERECORD and ctx.mode is Mode.RECORD:
                return None  # go live and overwrite it
        return self._replayed(ctx, url, canonical, key, entry, stale=stale)

    def _replayed(
        self, ctx: TestContext, url: str, canonical: CanonicalRequest, key: str, entry: Entry, **extra: Any
    ) -> Replay:
        self._record_call(
            ctx,
            Outcome.REPLAYED,
            url,
            canonical.model,
            key,
            status=entry.replay.status,
            recording=entry.recording,
            **extra,
        )
        return entry.replay

    def _is_stale(self, recording: Recording) -> bool:
        max_age = self.settings.max_age
        return max_age is not None and recording.meta.recorded_at < self._started_at - max_age

    def _stale_message(self, ctx: TestContext, recording: Recording) -> str:
        age = self._started_at - recording.meta.recorded_at
        return (
            f"promptcache: the recording for this request is stale (mode: {ctx.mode.value})\n"
            f"  recording: {self.store.path_for(recording.key)}\n"
            f"  recorded:  {recording.meta.recorded_at:%Y-%m-%d %H:%M} UTC, {age.days} days ago, by "
            f"{recording.meta.test or 'an unknown test'}\n"
            f"  max-age:   {_age(self.settings.max_age)} (promptcache_on_expiry = fail)\n"
            "\nTo refresh it, run with the API reachable and its key set:\n"
            f"  {record_command(ctx.target, mode='rewrite')}"
        )

    def _serve_similar(
        self, ctx: TestContext, url: str, canonical: CanonicalRequest, key: str
    ) -> Replay | None:
        """Opt-in (``--promptcache-match=similar:T``): the most similar recording of the same endpoint,
        model and stream flag, if at least T similar. Every substitution is reported."""
        threshold = self.settings.similar_threshold
        if threshold is None:
            return None
        found = most_similar(canonical, self.store.all_requests(), threshold)
        if found is None:
            return None
        served_key, score = found
        try:
            entry = self.store.get(served_key)
        except CorruptRecording:
            return None
        if entry is None:
            return None
        return self._replayed(
            ctx,
            url,
            canonical,
            key,
            entry,
            served_key=served_key,
            similarity=round(score, 4),
            stale=self._is_stale(entry.recording),
        )

    def after_wait(self, wait: Wait, raw: RawRequest) -> Replay | None:
        """After waiting for an identical call: its failure, shared (raised or served), or None to ask
        again (its recording is there now, or it was abandoned and this caller may go live)."""
        flight = wait.failure
        if flight is None:
            return None
        ctx = self.session.context
        key, canonical = self.keyer.key_for(raw, ctx.rules)
        detail = "an identical call in flight failed: "
        detail += repr(flight.exception) if flight.exception is not None else f"HTTP {flight.response.status}"  # type: ignore[union-attr]
        self._record_call(
            ctx,
            Outcome.SHARED_FAILURE,
            display_url(raw, self.scrubber),
            canonical.model,
            key,
            status=flight.response.status if flight.response is not None else None,
            detail=detail,
        )
        if flight.exception is not None:
            raise flight.exception
        return flight.response

    def _budget_spent(self) -> bool:
        budget = self.settings.budget_usd
        return budget is not None and self.state.spent() >= budget

    def _budget_message(self, url: str) -> str:
        return (
            f"promptcache: budget reached, live call refused: {url}\n"
            f"  live calls in this session have cost ${self.state.spent():.4f}; "
            f"the budget (--promptcache-budget / promptcache_budget) is ${self.settings.budget_usd:.4f}.\n"
            "  Raise the budget, or record fewer tests at a time."
        )

    def _miss_message(self, ctx: TestContext, url: str, canonical: CanonicalRequest, key: str) -> str:
        near = nearest(canonical, self.store.all_requests())
        recorded_by = None
        if near is not None:
            try:
                entry = self.store.get(near[0])
            except CorruptRecording:
                entry = None
            recorded_by = entry.recording.meta.test if entry is not None else None
        return miss_message(
            request=canonical,
            key=key,
            url=url,
            directory=self.settings.cassette_dir,
            target=ctx.target,
            near=near,
            recorded_by=recorded_by,
        )

    def _fail(
        self,
        ctx: TestContext,
        outcome: Outcome,
        url: str,
        canonical: CanonicalRequest,
        key: str | None,
        message: str,
    ) -> Replay:
        """Fail the test, and answer the client in a way SDKs neither retry nor hide.

        Raising in the transport would be retried with backoff and rewrapped by the SDKs (openai turns it
        into APIConnectionError after ~2.5 s). A 404 with ``x-should-retry: false`` reaches the caller at
        once as NotFoundError carrying the message; the plugin fails the test even if that is caught.
        """
        self.problem(ctx, message)
        self._record_call(ctx, outcome, url, canonical.model, key, status=404, detail=message)
        return build_replay(
            RecordedResponse(
                status=404,
                headers={
                    "content-type": "application/json",
                    "x-should-retry": "false",
                    "x-promptcache": "miss",
                },
                # Both the OpenAI and the Anthropic SDK find "message" here and put it in their error.
                body={
                    "type": "error",
                    "error": {"type": "promptcache_miss", "code": "promptcache_miss", "message": message},
                },
            )
        )

    def _record_call(
        self, ctx: TestContext, outcome: Outcome, url: str, model: str | None, key: str | None, **fields: Any
    ) -> CallEvent:
        """Every intercepted call ends here once: in the test's calls, the session's, and the ledger."""
        event = CallEvent(
            test=ctx.nodeid, mode=ctx.mode, outcome=outcome, url=url, model=model, key=key, **fields
        )
        with self._lock:
            ctx.calls.append(event)
            self.events.append(event)
        self.ledger.add(event)
        return event

    # -- saving --------------------------------------------------------------------------------------

    def scrub_response(self, response: RecordedResponse) -> RecordedResponse:
        scrub = self.scrubber
        headers = scrub.headers((k, v) for k, v in response.headers.items() if k not in WIRE_HEADERS)
        events = None
        if response.events is not None:
            events = [
                SSEEvent(
                    event=ev.event,
                    data=scrub.json(ev.data),
                    text=scrub.text(ev.text) if ev.text is not None else None,
                    id=ev.id,
                    retry=ev.retry,
                )
                for ev in response.events
            ]
        return RecordedResponse(
            status=response.status,
            headers=headers,
            body=scrub.json(response.body),
            text=scrub.text(response.text) if response.text is not None else None,
            base64=response.base64,
            events=events,
        )


class LiveCall:
    """A call that goes to the network; the interceptor reports what came back."""

    def __init__(
        self,
        engine: Engine,
        ctx: TestContext,
        url: str,
        host: str,
        *,
        key: str | None,
        canonical: CanonicalRequest | None,
        flight: Flight | None,
    ) -> None:
        self._engine = engine
        self._ctx = ctx
        self.url = url
        self.host = host
        self.key = key
        self.canonical = canonical
        self.save = key is not None
        self.flight = flight
        self._started = time.perf_counter()

    def _record_call(self, outcome: Outcome, **fields: Any) -> CallEvent:
        model = self.canonical.model if self.canonical else None
        return self._engine._record_call(self._ctx, outcome, self.url, model, self.key, **fields)

    def _finish(self, *, exception: BaseException | None = None, response: Replay | None = None) -> None:
        if self.flight is not None:
            flight, self.flight = self.flight, None
            self._engine.flights.finish(flight, exception=exception, response=response)

    # -- before sending: pacing and retries (record and rewrite only) ------------------------------------

    def pace(self) -> float:
        """Seconds to wait before sending, to hold the host's configured requests per minute."""
        rpm = self._engine.settings.record_rpm
        if not self.save or not rpm:
            return 0.0
        return self._engine.state.reserve_slot(self.host, 60.0 / rpm)

    def retry_delay(self, status: int, headers: list[tuple[str, str]], attempt: int) -> float | None:
        """Seconds to wait before sending again after a 429 or 5xx, or None to hand it to the client."""
        retries = self._engine.settings.record_retries
        if not self.save or attempt >= retries or (status != 429 and status < 500):
            return None
        self._started = time.perf_counter()
        return retry_delay(headers, attempt)

    # -- what came back ----------------------------------------------------------------------------------

    def failed(self, exc: BaseException) -> None:
        self._record_call(Outcome.ERROR, detail=f"transport error: {exc!r}")
        self._finish(exception=exc)

    def response(self, status: int, headers: list[tuple[str, str]]) -> BodyRecorder | None:
        """Called when the live response's head arrives; a recorder to tee the body through, or None
        to hand the response to the client untouched."""
        latency_ms = (time.perf_counter() - self._started) * 1000
        if not is_recordable_status(status):
            self._record_call(Outcome.ERROR, status=status, detail=f"HTTP {status}")
            if self.flight is None:
                return None
            # Waiting identical calls get this same answer once its body has been read.
            return BodyRecorder(
                status=status,
                headers=headers,
                on_complete=lambda r: self._finish(response=build_replay(r)),
                on_incomplete=lambda reason, failed: self._finish(),
            )

        def complete(response: RecordedResponse) -> None:
            if not self.save or self.key is None or self.canonical is None:
                self._record_call(Outcome.LIVE, status=status, response=response)
                return
            now = datetime.now(UTC)
            usage, cost = self._engine.ledger.measure(
                response, self.canonical.path, self.canonical.model, self.url, now
            )
            recording = Recording(
                key=self.key,
                request=self.canonical,
                response=self._engine.scrub_response(response),
                meta=RecordingMeta(
                    recorded_at=now,
                    test=self._ctx.nodeid,
                    url=self.url,
                    latency_ms=round(latency_ms, 1),
                    plugin_version=__version__,
                    usage=usage,
                    cost_usd=cost,
                ),
            )
            try:
                self._engine.store.put(recording)
            except OSError as exc:
                self._engine.problem(
                    self._ctx, f"promptcache: could not save the recording for {self.url}: {exc}"
                )
                self._record_call(Outcome.LIVE, status=status, response=response)
                self._finish()
                return
            if self._ctx.mode is Mode.REWRITE:
                self._engine.state.mark_rewritten(self.key)
            event = self._record_call(Outcome.RECORDED, status=status, recording=recording)
            self._finish()
            self._charge_tokens(event)

        def incomplete(reason: str, failed: bool) -> None:
            outcome = Outcome.ERROR if failed else Outcome.LIVE
            self._record_call(outcome, status=status, detail=f"not saved: {reason}")
            self._finish()

        return BodyRecorder(status=status, headers=headers, on_complete=complete, on_incomplete=incomplete)

    def _charge_tokens(self, event: CallEvent) -> None:
        """Under a tokens-per-minute limit, a call's tokens delay the host's next request."""
        tpm = self._engine.settings.record_tpm
        if tpm and event.record is not None and event.record.usage is not None:
            self._engine.state.add_debt(self.host, event.record.usage.total_tokens * 60.0 / tpm)


def _age(value: timedelta | None) -> str:
    if value is None:
        return "-"
    if value.days and not value.seconds:
        return f"{value.days}d"
    return f"{value.total_seconds() / 3600:g}h"


def retry_delay(headers: list[tuple[str, str]], attempt: int) -> float:
    """Exponential backoff with full jitter, or what the provider's Retry-After asks for."""
    for name, value in headers:
        if name.lower() == "retry-after":
            try:
                return min(max(float(value), 0.0), MAX_RETRY_WAIT)
            except ValueError:
                try:
                    when = parsedate_to_datetime(value)
                except (TypeError, ValueError):
                    break
                return min(max((when - datetime.now(UTC)).total_seconds(), 0.0), MAX_RETRY_WAIT)
    return random.uniform(0, min(MAX_RETRY_WAIT, 2.0**attempt))
