"""The engine's part in ordered scopes (``ordered.py``): a call's turn, the test's own recordings
under each of its scope's names, the player's interactions (a vcr cassette) and the drift check.

Mixed into ``Engine``, which provides what it declares below; kept apart so each stays readable.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .choices import Drift
from .context import TestContext
from .keys import HookError, Keyer, RawRequest, key_of
from .ledger import Ledger
from .miss import drift_message
from .models import CanonicalRequest, RequestScope
from .ordered import OrderedScope, Played, Turn
from .scrub import Scrubber
from .settings import Mode
from .store.cassettes import StoredRecording
from .streams import Replay


class OrderedServing:
    """Serving a test's ordered scope. ``Engine`` provides the keyer, the scrubber, and serving one
    recording by its key."""

    keyer: Keyer
    scrubber: Scrubber
    ledger: Ledger

    if TYPE_CHECKING:

        def _serve_recorded(
            self, ctx: TestContext, url: str, model: str | None, key: str
        ) -> Replay | None: ...

        def _replayed(
            self,
            ctx: TestContext,
            url: str,
            model: str | None,
            key: str,
            stored: StoredRecording,
            **extra: Any,
        ) -> Replay: ...

    def _take_turn(self, ctx: TestContext, scope: OrderedScope, raw: RawRequest, turn: Turn) -> None:
        """Where this call stands in its test's scope: the request as keyed, and its index under each of
        the scope's names. Once per call, however often it asks."""
        turn.decided = True
        player = scope.player
        keyed = player.prepare(raw) if player is not None else raw
        if keyed is None:
            return  # the player's tool would leave this request alone: the session's recordings answer
        turn.keyed, turn.player = keyed, player
        try:
            key, _ = self.keyer.key_for(keyed, ctx.rules)
        except HookError:
            return  # ``start`` fails the call with the hook's message
        turn.slots = tuple((name, scope.index(name, key)) for name in scope.names)

    def _scoped(self, canonical: CanonicalRequest, name: str, index: int) -> tuple[str, CanonicalRequest]:
        # A node id may carry a parametrize value that is a secret.
        scoped = canonical.model_copy(
            update={"scope": RequestScope(name=self.scrubber.text(name), index=index)}
        )
        return key_of(scoped), scoped

    def _serve_in_scope(
        self, ctx: TestContext, url: str, raw: RawRequest, canonical: CanonicalRequest, key: str, turn: Turn
    ) -> Replay | None:
        """The test's own recordings (the first name that has one), then its player's next matching
        interaction, then the session's recording: scoped recordings are what the test itself recorded
        last, so they win over a cassette it may have outgrown; another test's recording of the same
        request may hold another answer, so the cassette wins over the session's.

        The player plays first whatever answers: what it played is what vcr would have, so the ``vcr``
        fixture's counts stay vcr's."""
        player = turn.player
        if player is not None and ctx.mode in (Mode.REPLAY, Mode.RECORD) and not turn.asked_player:
            turn.asked_player = True
            turn.played = player.play(raw)
        for name, index in turn.slots:
            scoped_key, scoped = self._scoped(canonical, name, index)
            served = self._serve_recorded(ctx, url, scoped.model, scoped_key)
            if served is not None:
                return self._made(turn, raw, served)
        if turn.played is not None:
            return self._serve_played(ctx, url, canonical, key, turn.played)
        served = self._serve_recorded(ctx, url, canonical.model, key)
        return self._made(turn, raw, served) if served is not None else None

    @staticmethod
    def _made(turn: Turn, raw: RawRequest, served: Replay) -> Replay:
        """A call its player did not play is listed after the player's interactions."""
        if turn.player is not None and turn.played is None and served.status != 404:
            turn.player.made(raw)(served)
        return served

    def _serve_played(
        self, ctx: TestContext, url: str, canonical: CanonicalRequest, key: str, played: Played
    ) -> Replay:
        """An interaction a player served, accounted as a replay. Matched as vcr matches (method, scheme,
        host, port, path and query unless the suite says otherwise), its recorded body may differ from
        what the code sends now: that is shown as a miss is, and fails the test when asked to."""
        scope = ctx.scope
        drift = scope.drift if scope is not None else Drift.WARN
        detail = None
        if drift is not Drift.IGNORE:
            recorded = self.keyer.canonical(played.recorded, ctx.rules)
            if (recorded.body, recorded.body_text, recorded.body_sha256) != (
                canonical.body,
                canonical.body_text,
                canonical.body_sha256,
            ):
                message = drift_message(
                    recorded=recorded,
                    request=canonical,
                    url=url,
                    where=self.scrubber.text(played.where),  # a cassette named after a parametrize id
                    failing=drift is Drift.FAIL,
                    target=ctx.target,
                )
                detail = "served although its request body differs from the recorded one"
                if drift is Drift.FAIL:
                    ctx.add_problem(message)
                else:
                    ctx.add_warning(message)
        stored = StoredRecording.of(played.recording, self.ledger.price_replay)
        return self._replayed(ctx, url, canonical.model, key, stored, detail=detail)
