"""What happens to one intercepted LLM call in each mode: look up, serve, miss, or go live and save.

The engine knows nothing of pytest or of which HTTP library sent the request: it asks ``context`` which
test is running; a client adapter hands it a ``RawRequest`` and turns its answer into a response of that
library.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from . import messages
from .context import TestContext
from .coordination.flight import Flight, Flights, Owner, Wait
from .coordination.pacing import Pacing
from .coordination.state import SharedState
from .coordination.statedir import state_dirs
from .engine_scope import OrderedServing
from .keys import HookError, Keyer, RawRequest, display_url
from .ledger import COPIED, CallEvent, Ledger, Outcome
from .live import LiveCall, Saver
from .miss import describe_miss, miss_response, most_similar, record_command
from .models import CanonicalRequest
from .ordered import Turn
from .replay import Replay
from .rules import KeyRules
from .scrub import Scrubber
from .settings import Expiry, Mode, Settings
from .sharing import connect
from .store.cassettes import CassetteStore, CorruptRecording, StoredRecording, Tier
from .usage import PriceBook


class Engine(OrderedServing):
    """What one call does. ``context`` says which test is running; without it (benchmarks, scripts)
    every call belongs to no test."""

    def __init__(
        self,
        settings: Settings,
        *,
        env: Mapping[str, str],
        rules: KeyRules | None = None,
        context: Callable[[], TestContext] | None = None,
    ) -> None:
        self.settings = settings
        outside = TestContext(nodeid=None, mode=settings.mode)
        self._context: Callable[[], TestContext] = context or (lambda: outside)
        self.scrubber = Scrubber(
            secret_headers=settings.secret_headers,
            secret_params=settings.secret_params,
            patterns=settings.secret_patterns,
            env=env,
        )
        self.keyer = Keyer(settings, self.scrubber, rules)
        top, root = state_dirs(settings.cassette_dir, settings.state_dir)
        limits = settings.limits
        local = SharedState(root, session_id=env.get("PYTEST_XDIST_TESTRUNUID") or None, private_from=top)
        # The fleet's Redis, if configured: reachable now, or a notice and this machine alone.
        self.link, shared, self.state = connect(settings, local)
        self.ledger = Ledger(PriceBook(settings.prices), on_live_cost=self.state.add_spend)
        self.store = CassetteStore(
            settings.cassette_dir,
            settings.memory_size,
            limits.max_recording_size,
            index_dir=root / "index",
            shared=shared,
            pricer=self.ledger.price_replay,
            prices=self.ledger.prices.identity,
            state_root=root,
        )
        self.keyer.memory = self.store.served_cache
        self.flights = Flights(self.state, limits.flight_timeout)
        self.pacing = Pacing(
            self.state,
            rpm=settings.record_rpm,
            tpm=settings.record_tpm,
            retries=settings.record_retries,
            max_wait=limits.record_max_wait,
        )
        machine = settings.shared.machine if settings.shared is not None else None
        self.saver = Saver(self.store, self.scrubber, self.ledger, self.state, machine=machine)
        if settings.mode in (Mode.RECORD, Mode.REWRITE):
            self.store.sweep_temp_files()
        self._started_at = datetime.now(UTC)

    def close(self) -> None:
        self.store.close(self.ledger.served_by_test())
        if self.link is not None:
            self.link.close()

    # -- one call --------------------------------------------------------------------------------------

    def start_in_memory(self, raw: RawRequest) -> Replay | None:
        """The answer when it needs no disk, lock or network, i.e. a recording in the memory tier; else
        None. Async adapters serve these on the event loop and run ``start`` in a thread otherwise."""
        ctx = self._context()
        if ctx.mode not in (Mode.REPLAY, Mode.RECORD) or ctx.scope is not None:
            return None  # an ordered scope counts each call once, in ``start``
        self.scrubber.learn(raw.headers)
        recalled = self.keyer.recall(raw, ctx.rules, wait=False)
        if recalled is None:
            return None
        key, model = recalled
        stored = self.store.in_memory(key)
        if stored is None:
            return None
        extra = {"tier": Tier.MEMORY.value} if self.settings.shared is not None else {}
        return self._serve_stored(ctx, display_url(raw, self.scrubber), model, key, stored, **extra)

    def start(
        self, raw: RawRequest, owner: Owner | None = None, turn: Turn | None = None
    ) -> Replay | LiveCall | Wait:
        """The response to serve, a live call the adapter must send and report back on, or something
        to wait for (an identical call in flight) before asking again. May touch the disk and locks.

        ``owner`` is the caller (thread and task) when this runs in a worker thread on its behalf.
        ``turn``: the same object each time one call asks again, so an ordered scope counts it once."""
        ctx = self._context()
        self.scrubber.learn(raw.headers, raw.query)
        url = display_url(raw, self.scrubber)
        if ctx.mode is Mode.OFF:
            if self._budget_spent():
                model = self.keyer.canonical(raw).model
                return self._fail(ctx, Outcome.BLOCKED, url, model, None, self._budget_message(url))
            # Not keyed, but the request is what names the model and what an estimate counts.
            return self._live(ctx, url, raw, canonical=self.keyer.canonical(raw))
        keyed = raw
        if ctx.scope is not None:
            turn = turn or Turn()
            if not turn.decided:
                self._take_turn(ctx, ctx.scope, raw, turn)
            keyed = turn.keyed or raw
        try:
            # Keyed before: served by key and model; the canonical request is built when nothing answers.
            key, model, canonical = self.keyer.recall_or_key(keyed, ctx.rules)
            # Before any message names the test: keying may have learned a credential from the body.
            ctx.hide_secrets(self.scrubber.text, self.scrubber.generation)
            if turn is None or not turn.slots:
                served = self._serve_recorded(ctx, url, model, key)
                if served is not None:
                    return served
            if canonical is None:
                key, canonical = self.keyer.key_for(keyed, ctx.rules)
        except HookError as exc:
            model = self.keyer.canonical(raw).model
            return self._fail(ctx, Outcome.MISS, url, model, None, f"promptcache: {exc}")
        ctx.hide_secrets(self.scrubber.text, self.scrubber.generation)  # keying again may have learned
        if turn is not None and turn.slots:
            served = self._serve_in_scope(ctx, url, raw, canonical, key, turn)
            if served is not None:
                return served
            # Missing, it is recorded (and named in a miss) as this test's own.
            key, canonical = self._scoped(canonical, *turn.slots[0])
            served = self._serve_recorded(ctx, url, canonical.model, key)
            if served is not None:
                return served
        if ctx.mode is Mode.REPLAY:
            similar = self._serve_similar(ctx, url, canonical, key)
            if similar is not None:
                return similar
            # vcr's matcher messages may quote headers: scrubbed like everything printed.
            player = turn.player if turn else None
            also = [self.scrubber.text(line) for line in player.explain(raw)] if player else []
            message = describe_miss(
                canonical, self.store, self.scrubber.text, key=key, url=url, target=ctx.target, also=also
            )
            return self._fail(ctx, Outcome.MISS, url, canonical.model, key, message)
        if self._budget_spent():
            return self._fail(ctx, Outcome.BLOCKED, url, canonical.model, key, self._budget_message(url))
        claim = self.flights.claim(key, owner)
        if isinstance(claim, Wait):
            return claim
        if claim is not None:
            # Leading now; the recording may have landed while this caller waited for the lead.
            served = self._serve_recorded(ctx, url, canonical.model, key)
            if served is not None:
                self.flights.finish(claim)
                return served
        slot = self.pacing.slot(raw.netloc)
        if not slot.reserved:
            if claim is not None:
                self.flights.finish(claim)  # identical waiters ask again, and meet the same queue
            limit = self.settings.limits.record_max_wait
            message = messages.pacing(raw.netloc, slot.wait, max_wait=limit, rpm=self.settings.record_rpm)
            return self._fail(ctx, Outcome.MISS, url, canonical.model, key, message)
        # A call no cassette played is listed after its interactions, as vcr lists what it records.
        player = turn.player if turn is not None and turn.played is None else None
        made = player.made(raw) if player is not None else None
        return self._live(
            ctx, url, raw, key=key, canonical=canonical, flight=claim, delay=slot.wait, made=made
        )

    def _live(
        self,
        ctx: TestContext,
        url: str,
        raw: RawRequest,
        key: str | None = None,
        canonical: CanonicalRequest | None = None,
        flight: Flight | None = None,
        delay: float = 0.0,
        made: Callable[[Replay], None] | None = None,
    ) -> LiveCall:
        return LiveCall(
            ctx,
            url,
            raw.netloc,
            log=self,
            ledger=self.ledger,
            pacing=self.pacing,
            key=key,
            canonical=canonical,
            flight=flight,
            flights=self.flights,
            saver=self.saver if key is not None else None,
            delay=delay,
            on_response=made,
        )

    def _serve_recorded(self, ctx: TestContext, url: str, model: str | None, key: str) -> Replay | None:
        """The recording for ``key`` if this mode serves it now: replay and record always, rewrite only
        once this session has rewritten it (so each request is paid for once). With a shared tier each
        hit is counted by tier (memory, cassettes, Redis); a Redis hit is copied into the cassette
        directory in record modes (so it can be committed), and in replay served from memory and
        reported as not in the cassettes."""
        if ctx.mode is Mode.REWRITE and not self.state.was_rewritten(key):
            return None
        try:
            found = self.store.lookup(key)
        except CorruptRecording as exc:
            if ctx.mode is Mode.REWRITE:
                return None
            return self._fail(ctx, Outcome.MISS, url, model, key, str(exc))
        if found is None:
            return None
        if self.settings.shared is None:
            return self._serve_stored(ctx, url, model, key, found.stored)
        extra: dict[str, Any] = {"tier": found.tier.value, "machine": found.machine}
        shared = found.recording  # only a shared hit keeps its whole recording, to be copied here
        if shared is not None and ctx.mode in (Mode.RECORD, Mode.REWRITE):
            extra["detail"] = COPIED if self.saver.adopt(ctx, shared) else None
        return self._serve_stored(ctx, url, model, key, found.stored, **extra)

    def _serve_stored(
        self,
        ctx: TestContext,
        url: str,
        model: str | None,
        key: str,
        stored: StoredRecording,
        **extra: Any,
    ) -> Replay | None:
        stale = self._is_stale(stored.recorded_at)
        if stale:
            expiry = self.settings.on_expiry
            if expiry is Expiry.FAIL:
                return self._fail(ctx, Outcome.MISS, url, model, key, self._stale_message(ctx, stored))
            if expiry is Expiry.RERECORD and ctx.mode is Mode.RECORD:
                return None  # go live and overwrite it
        return self._replayed(ctx, url, model, key, stored, stale=stale, **extra)

    def _replayed(
        self,
        ctx: TestContext,
        url: str,
        model: str | None,
        key: str,
        stored: StoredRecording,
        **extra: Any,
    ) -> Replay:
        price, replay = stored.price, stored.replay
        self.record_call(
            ctx,
            Outcome.REPLAYED,
            url,
            model,
            key,
            status=replay.status,
            recorded_at=stored.recorded_at,
            usage=price.usage,
            cost_usd=price.cost_usd,
            cache_saved_usd=price.cache_saved_usd,
            **extra,
        )
        return replay

    def _is_stale(self, recorded_at: datetime) -> bool:
        max_age = self.settings.max_age
        return max_age is not None and recorded_at < self._started_at - max_age

    def _stale_message(self, ctx: TestContext, stored: StoredRecording) -> str:
        return messages.stale(
            mode=ctx.mode,
            path=self.store.path_for(stored.key),
            recorded_at=stored.recorded_at,
            age=self._started_at - stored.recorded_at,
            recorded_by=self.scrubber.text(stored.test or "an unknown test"),
            max_age=self.settings.max_age,
            command=record_command(ctx.target, mode="rewrite"),
        )

    def _serve_similar(
        self, ctx: TestContext, url: str, canonical: CanonicalRequest, key: str
    ) -> Replay | None:
        """Opt-in (``--promptcache-match=similar:T``): the most similar recording of the same endpoint,
        model and stream flag, if at least T similar. Every substitution is reported."""
        threshold = self.settings.similar_threshold
        if threshold is None:
            return None
        found = most_similar(canonical, self.store, threshold)
        if found is None:
            return None
        served_key, score = found
        try:
            stored = self.store.get(served_key)
        except CorruptRecording:
            return None
        if stored is None:
            return None
        return self._replayed(
            ctx,
            url,
            canonical.model,
            key,
            stored,
            served_key=served_key,
            similarity=round(score, 4),
            stale=self._is_stale(stored.recorded_at),
        )

    def after_wait(self, wait: Wait, raw: RawRequest) -> Replay | None:
        """After waiting for an identical call: its failure, shared (raised or served), a failure of this
        call's own when the wait timed out (it does not go live: the other call may yet save it), or None
        to ask again (its recording is there now, or it was abandoned and this caller may go live)."""
        if wait.timed_out:
            ctx = self._context()
            key, canonical = self.keyer.key_for(raw, ctx.rules)
            url = display_url(raw, self.scrubber)
            message = messages.waited_too_long(wait.timeout, raw.method, url, wait.key, wait.holder())
            return self._fail(ctx, Outcome.MISS, url, canonical.model, key, message)
        flight = wait.failure
        if flight is None:
            return None
        ctx = self._context()
        key, canonical = self.keyer.key_for(raw, ctx.rules)
        if flight.exception is not None:
            detail, status = repr(flight.exception), None
        else:
            assert flight.response is not None  # a failure is an exception or an error response
            detail, status = f"HTTP {flight.response.status}", flight.response.status
        self.record_call(
            ctx,
            Outcome.SHARED_FAILURE,
            display_url(raw, self.scrubber),
            canonical.model,
            key,
            status=status,
            detail=f"an identical call in flight failed: {detail}",
        )
        if flight.exception is not None:
            raise flight.exception
        return flight.response

    def _budget_spent(self) -> bool:
        budget = self.settings.budget_usd
        return budget is not None and self.state.spent() >= budget

    def _budget_message(self, url: str) -> str:
        return messages.budget(url, spent=self.state.spent(), budget=self.settings.budget_usd or 0.0)

    def _fail(
        self,
        ctx: TestContext,
        outcome: Outcome,
        url: str,
        model: str | None,
        key: str | None,
        message: str,
    ) -> Replay:
        """Fail the test, and answer the client in a way SDKs neither retry nor hide (``miss_response``)."""
        ctx.add_problem(message)
        self.record_call(ctx, outcome, url, model, key, status=404, detail=message)
        return miss_response(message)

    def record_call(
        self, ctx: TestContext, outcome: Outcome, url: str, model: str | None, key: str | None, **fields: Any
    ) -> CallEvent:
        """Every intercepted call ends here once: in the test's calls and in the session's ledger."""
        ctx.hide_secrets(self.scrubber.text, self.scrubber.generation)
        event = CallEvent(
            test=ctx.nodeid, mode=ctx.mode, outcome=outcome, url=url, model=model, key=key, **fields
        )
        ctx.add_call(event)
        self.ledger.add(event)
        return event
