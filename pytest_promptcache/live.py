"""A call that goes to the network: paced and retried while recording, its body watched as it passes,
and saved once it is complete.

The engine decides that a call goes live; the client adapter sends it and tells the ``LiveCall`` what
came back. Everything a live call needs is handed to it: where to log the call, the flight to end, the
pacing, and the saver.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

from . import __version__, eventstream
from .context import TestContext
from .coordination.backend import Coordination
from .coordination.flight import Flight, Flights
from .coordination.pacing import Pacing
from .ledger import NOT_SAVED, CallEvent, Ledger, Outcome
from .models import (
    CanonicalRequest,
    RecordedResponse,
    Recording,
    RecordingMeta,
    SSEEvent,
    schema_version_for,
)
from .replay import WIRE_HEADERS, Replay, build_replay
from .scrub import Scrubber
from .settings import Mode
from .store.cassettes import CassetteStore
from .stream_secrets import redact_events, redact_stream
from .streams import BodyRecorder

# Outcomes that depend on when or how often you ask: recording them would replay a bad day forever.
NOT_RECORDED_STATUSES = frozenset({401, 403, 408, 409, 429})


def is_recordable_status(status: int) -> bool:
    return status < 500 and status not in NOT_RECORDED_STATUSES


class CallLog(Protocol):
    """Where every call ends up once (the engine)."""

    def record_call(
        self, ctx: TestContext, outcome: Outcome, url: str, model: str | None, key: str | None, **fields: Any
    ) -> CallEvent: ...


class Saver:
    """Turns a complete live response into a recording on disk: scrubbed, priced, stored."""

    def __init__(
        self,
        store: CassetteStore,
        scrubber: Scrubber,
        ledger: Ledger,
        state: Coordination,
        machine: str | None = None,
    ) -> None:
        """``machine``: this machine's name, with a shared tier (its recordings are named after it)."""
        self.store = store
        self.scrubber = scrubber
        self.ledger = ledger
        self.state = state
        self.machine = machine

    def save(
        self,
        ctx: TestContext,
        key: str,
        request: CanonicalRequest,
        url: str,
        response: RecordedResponse,
        latency_ms: float,
    ) -> Recording:
        """Raises OSError when the file cannot be written."""
        price = self.ledger.live_price(
            response, request.path, request.model, url, body=request.body, method=request.method
        )
        ctx.hide_secrets(self.scrubber.text, self.scrubber.generation)
        recording = Recording(
            schema_version=schema_version_for(response, request),
            key=key,
            request=request,
            response=scrubbed(response, self.scrubber),
            meta=RecordingMeta(
                recorded_at=datetime.now(UTC),
                test=ctx.nodeid,
                url=url,
                latency_ms=round(latency_ms, 1),
                plugin_version=__version__,
                usage=price.usage,
                cost_usd=price.cost_usd,
                cache_saved_usd=price.cache_saved_usd,
            ),
        )
        self.store.put(recording, self.machine)
        if ctx.mode is Mode.REWRITE:
            self.state.mark_rewritten(key)
        return recording

    def adopt(self, ctx: TestContext, recording: Recording) -> bool:
        """A recording found in the shared tier, written to this cassette directory so it can be
        committed; scrubbed with this machine's secrets too, since Redis content is not trusted. False,
        and a problem for the test, when the file cannot be written."""
        clean = recording.model_copy(update={"response": scrubbed(recording.response, self.scrubber)})
        try:
            self.store.put(clean, shared=False)
        except OSError as exc:
            path = self.store.path_for(recording.key)
            ctx.add_problem(f"promptcache: could not copy the shared tier's recording to {path}: {exc}")
            return False
        return True


def scrubbed(response: RecordedResponse, scrub: Scrubber) -> RecordedResponse:
    """The response as it may be written: no wire or secret headers, secrets replaced everywhere, in
    streams also where they arrived in pieces."""
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
            for ev in redact_events(response.events, scrub)
        ]
    body = response.body
    if isinstance(body, list):  # a stream sent as one JSON array (Gemini without alt=sse)
        body = redact_stream(body, scrub)
    messages = None
    if response.event_stream is not None:
        messages = [eventstream.scrubbed(m, scrub.json, scrub.text) for m in response.event_stream]
    return RecordedResponse(
        status=response.status,
        headers=headers,
        body=scrub.json(body),
        text=scrub.text(response.text) if response.text is not None else None,
        base64=response.base64,
        events=events,
        event_stream=messages,
    )


class LiveCall:
    """A call that goes to the network; the client adapter reports what came back.

    ``saver`` is None when nothing is to be saved (mode off): then the call is neither paced nor retried.
    ``delay``: seconds pacing holds it before it is sent. ``on_response``: told the complete response
    (a vcr cassette lists it, as vcr lists what it records).
    """

    def __init__(
        self,
        ctx: TestContext,
        url: str,
        host: str,
        *,
        log: CallLog,
        ledger: Ledger,
        pacing: Pacing,
        key: str | None = None,
        canonical: CanonicalRequest | None = None,
        flight: Flight | None = None,
        flights: Flights | None = None,
        saver: Saver | None = None,
        delay: float = 0.0,
        on_response: Callable[[Replay], None] | None = None,
    ) -> None:
        self._ctx = ctx
        self._on_response = on_response
        self._log = log
        self._ledger = ledger
        self._pacing = pacing
        self._flights = flights
        self._saver = saver
        self.url = url
        self.host = host
        self.key = key
        self.canonical = canonical
        self.flight = flight
        self._delay = delay
        self._started = time.perf_counter()

    @property
    def saves(self) -> bool:
        return self._saver is not None and self.key is not None and self.canonical is not None

    def _record_call(self, outcome: Outcome, **fields: Any) -> CallEvent:
        model = self.canonical.model if self.canonical else None
        return self._log.record_call(self._ctx, outcome, self.url, model, self.key, **fields)

    def _finish(
        self, *, exception: BaseException | None = None, response: RecordedResponse | None = None
    ) -> None:
        if self.flight is not None and self._flights is not None:
            flight, self.flight = self.flight, None
            replay = build_replay(response) if response is not None else None
            self._flights.finish(flight, exception=exception, response=replay)

    # -- before sending: pacing and retries (record and rewrite only) ------------------------------------

    def delay_before_send(self) -> float:
        """Seconds to wait before sending: the slot pacing reserved for this call (engine.start)."""
        return self._delay

    def retry_delay(self, status: int, headers: Sequence[tuple[str, str]], attempt: int) -> float | None:
        """Seconds to wait before sending again after a 429 or 5xx, or None to hand it to the client."""
        if not self.saves:
            return None
        delay = self._pacing.retry_delay(status, headers, attempt)
        if delay is not None:
            self._started = time.perf_counter()
        return delay

    # -- what came back ----------------------------------------------------------------------------------

    def failed(self, exc: BaseException) -> None:
        self._record_call(Outcome.ERROR, detail=f"transport error: {exc!r}")
        self._finish(exception=exc)

    def recorder_for(
        self, status: int, headers: list[tuple[str, str]], *, defer: bool = False
    ) -> BodyRecorder | None:
        """Called when the live response's head arrives: a recorder to tee the body through, or None
        to hand the response to the client untouched. ``defer``: see ``BodyRecorder``."""
        latency_ms = (time.perf_counter() - self._started) * 1000
        if not is_recordable_status(status):
            self._record_call(Outcome.ERROR, status=status, detail=f"HTTP {status}")
            if self.flight is None:
                return None
            # Waiting identical calls get this same answer once its body has been read.
            return BodyRecorder(
                status=status,
                headers=headers,
                on_complete=lambda r: self._finish(response=r),
                on_incomplete=lambda reason, failed: self._finish(),
                defer=defer,
            )

        def complete(response: RecordedResponse) -> None:
            self._complete(status, response, latency_ms)

        def incomplete(reason: str, failed: bool) -> None:
            outcome = Outcome.ERROR if failed else Outcome.LIVE
            self._record_call(outcome, status=status, detail=f"{NOT_SAVED}{reason}")
            self._finish()

        return BodyRecorder(
            status=status, headers=headers, on_complete=complete, on_incomplete=incomplete, defer=defer
        )

    def _complete(self, status: int, response: RecordedResponse, latency_ms: float) -> None:
        if self._on_response is not None:
            self._on_response(build_replay(response))
        saver, key, canonical = self._saver, self.key, self.canonical
        if saver is None or key is None or canonical is None:
            self._record_unsaved(status, response)
            return
        try:
            recording = saver.save(self._ctx, key, canonical, self.url, response, latency_ms)
        except OSError as exc:
            self._ctx.add_problem(f"promptcache: could not save the recording for {self.url}: {exc}")
            self._record_unsaved(status, response)
            self._finish()
            return
        meta = recording.meta
        event = self._record_call(
            Outcome.RECORDED,
            status=status,
            recorded_at=meta.recorded_at,
            usage=meta.usage,
            cost_usd=meta.cost_usd,
            cache_saved_usd=meta.cache_saved_usd,
            machine=saver.machine,
        )
        self._finish()
        if event.usage is not None:
            self._pacing.charge(self.host, event.usage.total_tokens)

    def _record_unsaved(self, status: int, response: RecordedResponse) -> None:
        """A complete live call that was not saved: still priced, since it was paid for."""
        path = self.canonical.path if self.canonical else _path(self.url)
        model = self.canonical.model if self.canonical else None
        body, method = (self.canonical.body, self.canonical.method) if self.canonical else (None, "POST")
        price = self._ledger.live_price(response, path, model, self.url, body=body, method=method)
        self._record_call(
            Outcome.LIVE,
            status=status,
            usage=price.usage,
            cost_usd=price.cost_usd,
            cache_saved_usd=price.cache_saved_usd,
        )


def _path(url: str) -> str:
    rest = url.split("://", 1)[-1]
    return "/" + rest.split("/", 1)[1].split("?", 1)[0] if "/" in rest else "/"
