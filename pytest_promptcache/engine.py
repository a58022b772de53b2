"""What happens to one intercepted LLM call in each mode: look up, serve, miss, or go live and save.

The engine knows nothing of pytest or of which httpx module sent the request: the plugin tells it which
test is running (``begin_test``), the interceptor hands it a ``RawRequest`` and turns its answers into
responses of the right module.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum

from . import __version__
from .keys import Keyer, RawRequest, display_url
from .miss import miss_message, nearest
from .models import CanonicalRequest, RecordedResponse, Recording, RecordingMeta, SSEEvent
from .report import CallRecord, Ledger
from .scrub import Scrubber
from .settings import Mode, Settings
from .store import CassetteStore, CorruptRecording
from .streams import WIRE_HEADERS, BodyRecorder, Replay, build_replay
from .usage import PriceBook

# Outcomes that depend on when or how often you ask: recording them would replay a bad day forever.
NOT_RECORDED_STATUSES = frozenset({401, 403, 408, 409, 429})


def is_recordable_status(status: int) -> bool:
    return status < 500 and status not in NOT_RECORDED_STATUSES


class Outcome(StrEnum):
    REPLAYED = "replayed"  # served from a recording
    RECORDED = "recorded"  # went live and was saved
    LIVE = "live"  # went live, not saved (mode off, or the body never completed)
    MISS = "miss"  # replay found no usable recording
    ERROR = "error"  # went live and failed: transport error or a status that is not recorded
    BLOCKED = "blocked"  # would have gone live, but the session's budget was spent


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
    # Usage and cost, filled in by the ledger (at once for live calls, lazily for replayed ones).
    record: CallRecord | None = None


@dataclass
class TestContext:
    nodeid: str | None
    mode: Mode
    # The test as the user would name it on the command line, from where they ran pytest.
    target: str | None = None
    problems: list[str] = field(default_factory=list)
    calls: list[CallEvent] = field(default_factory=list)


class Engine:
    def __init__(self, settings: Settings, env: Mapping[str, str] | None = None) -> None:
        self.settings = settings
        self.scrubber = Scrubber(
            secret_headers=settings.secret_headers,
            secret_params=settings.secret_params,
            patterns=settings.secret_patterns,
            env=os.environ if env is None else env,
        )
        self.keyer = Keyer(settings, self.scrubber)
        self.store = CassetteStore(settings.cassette_dir, settings.memory_size)
        self.ledger = Ledger(PriceBook(settings.prices))
        self.events: list[CallEvent] = []
        self._lock = threading.Lock()
        # Threads a test starts must see the test's context, so this is one shared slot, not a contextvar.
        self._context = TestContext(nodeid=None, mode=settings.mode)

    # -- test lifecycle (driven by the plugin) -------------------------------------------------------

    def begin_test(self, nodeid: str, mode: Mode | None = None, target: str | None = None) -> TestContext:
        self._context = TestContext(nodeid=nodeid, mode=mode or self.settings.mode, target=target or nodeid)
        return self._context

    def end_test(self) -> None:
        self._context = TestContext(nodeid=None, mode=self.settings.mode)

    @property
    def context(self) -> TestContext:
        return self._context

    def take_problems(self) -> list[str]:
        ctx = self._context
        with self._lock:
            problems, ctx.problems[:] = list(ctx.problems), []
        return problems

    def handles(self, host: str, path: str) -> bool:
        return self.settings.is_llm_endpoint(host.lower(), path)

    # -- one call --------------------------------------------------------------------------------------

    def start(self, raw: RawRequest) -> Replay | LiveCall:
        """Either the response to serve, or a live call the interceptor must send and report back on."""
        ctx = self._context
        self.scrubber.learn(raw.headers)
        url = display_url(raw, self.scrubber)
        if ctx.mode is Mode.OFF:
            if self._budget_spent():
                canonical = self.keyer.canonical(raw)
                return self._fail(ctx, Outcome.BLOCKED, url, canonical, None, self._budget_message(url))
            return LiveCall(self, ctx, url, key=None, canonical=None, save=False)
        key, canonical = self.keyer.key_for(raw)
        if ctx.mode in (Mode.REPLAY, Mode.RECORD):
            try:
                entry = self.store.get(key)
            except CorruptRecording as exc:
                return self._fail(ctx, Outcome.MISS, url, canonical, key, str(exc))
            if entry is not None:
                self._emit(
                    ctx,
                    CallEvent(
                        test=ctx.nodeid,
                        mode=ctx.mode,
                        outcome=Outcome.REPLAYED,
                        url=url,
                        model=canonical.model,
                        key=key,
                        status=entry.replay.status,
                        recording=entry.recording,
                    ),
                )
                return entry.replay
            if ctx.mode is Mode.REPLAY:
                message = self._miss_message(ctx, url, canonical, key)
                return self._fail(ctx, Outcome.MISS, url, canonical, key, message)
        if self._budget_spent():
            return self._fail(ctx, Outcome.BLOCKED, url, canonical, key, self._budget_message(url))
        return LiveCall(self, ctx, url, key=key, canonical=canonical, save=True)

    def _budget_spent(self) -> bool:
        budget = self.settings.budget_usd
        return budget is not None and self.ledger.live_spent >= Decimal(str(budget))

    def _budget_message(self, url: str) -> str:
        return (
            f"promptcache: budget reached, live call refused: {url}\n"
            f"  live calls in this session have cost ${self.ledger.live_spent:.4f}; "
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
        self._emit(
            ctx,
            CallEvent(
                test=ctx.nodeid,
                mode=ctx.mode,
                outcome=outcome,
                url=url,
                model=canonical.model,
                key=key,
                status=404,
                detail=message,
            ),
        )
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

    def problem(self, ctx: TestContext, message: str) -> None:
        with self._lock:
            ctx.problems.append(message)

    def _emit(self, ctx: TestContext, event: CallEvent) -> None:
        with self._lock:
            ctx.calls.append(event)
            self.events.append(event)
        self.ledger.add(event)

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
        *,
        key: str | None,
        canonical: CanonicalRequest | None,
        save: bool,
    ) -> None:
        self._engine = engine
        self._ctx = ctx
        self.url = url
        self.key = key
        self.canonical = canonical
        self.save = save
        self._started = time.perf_counter()

    def _event(self, outcome: Outcome, **kw: object) -> CallEvent:
        return CallEvent(
            test=self._ctx.nodeid,
            mode=self._ctx.mode,
            outcome=outcome,
            url=self.url,
            model=self.canonical.model if self.canonical else None,
            key=self.key,
            **kw,  # type: ignore[arg-type]
        )

    def failed(self, exc: BaseException) -> None:
        self._engine._emit(self._ctx, self._event(Outcome.ERROR, detail=f"transport error: {exc!r}"))

    def response(self, status: int, headers: list[tuple[str, str]]) -> BodyRecorder | None:
        """Called when the live response's head arrives; a recorder to tee the body through, or None
        to hand the response to the client untouched."""
        latency_ms = (time.perf_counter() - self._started) * 1000
        if not is_recordable_status(status):
            self._engine._emit(self._ctx, self._event(Outcome.ERROR, status=status, detail=f"HTTP {status}"))
            return None

        def complete(response: RecordedResponse) -> None:
            if not self.save or self.key is None or self.canonical is None:
                self._engine._emit(self._ctx, self._event(Outcome.LIVE, status=status, response=response))
                return
            recording = Recording(
                key=self.key,
                request=self.canonical,
                response=self._engine.scrub_response(response),
                meta=RecordingMeta(
                    recorded_at=datetime.now(UTC),
                    test=self._ctx.nodeid,
                    url=self.url,
                    latency_ms=round(latency_ms, 1),
                    plugin_version=__version__,
                ),
            )
            try:
                self._engine.store.put(recording)
            except OSError as exc:
                self._engine.problem(
                    self._ctx, f"promptcache: could not save the recording for {self.url}: {exc}"
                )
                self._engine._emit(self._ctx, self._event(Outcome.LIVE, status=status, response=response))
                return
            self._engine._emit(self._ctx, self._event(Outcome.RECORDED, status=status, recording=recording))

        def incomplete(reason: str, failed: bool) -> None:
            outcome = Outcome.ERROR if failed else Outcome.LIVE
            event = self._event(outcome, status=status, detail=f"not saved: {reason}")
            self._engine._emit(self._ctx, event)

        return BodyRecorder(status=status, headers=headers, on_complete=complete, on_incomplete=incomplete)
