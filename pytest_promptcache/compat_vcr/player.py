"""One test's vcr cassette, played as vcr plays it: the ``Player`` of the test's ordered scope.

vcr decides: ``Cassette.play_response`` matches a request with the cassette's matchers (method and URI
unless ``match_on`` says otherwise) after its request filters, and plays the first matching interaction
not played yet. The engine serves what it played as a replay (priced, listed in the report, a drifted
body shown), so the cassette is exactly what the ``vcr`` fixture hands the test: ``requests``,
``responses``, ``play_count``, ``all_played``, ``play_counts`` and ``len()`` say what vcr would say.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any
from urllib.parse import unquote, urlsplit

from vcr.errors import UnhandledHTTPRequestError

from .. import __version__
from ..keys import RawRequest
from ..models import CanonicalRequest, Recording, RecordingMeta
from ..ordered import Played
from ..streams import Replay
from .convert import ConversionError, from_vcr, json_or_none, recorded_response, to_vcr, to_vcr_response
from .opening import Opened

# Lines of a vcr matcher's explanation shown in a miss (its body diff is bounded, its header dump not).
_MAX_EXPLANATION_LINES = 12


class VcrPlayer:
    """``play``: serve the cassette's interactions (False: the suite runs on recordings only, and the
    cassette only lists what the test was served)."""

    def __init__(self, opened: Opened, *, play: bool = True) -> None:
        self.cassette: Any = opened.cassette
        self.label = opened.paths[0]
        self.scope_names = opened.paths
        self._play = play
        self._written_at: datetime = opened.written_at
        self._loaded = len(self.cassette.data)
        # vcr's play counts are a plain Counter: calls from a test's threads take turns.
        self._lock = threading.Lock()
        self._played: dict[int, Played] = {}
        self._unusable: dict[int, str] = {}
        targets: set[tuple[str, str]] = set()
        for request in self.cassette.requests:
            parts = urlsplit(request.uri)
            host = (parts.hostname or "").lower()
            targets.update({(host, parts.path or "/"), (host, unquote(parts.path or "/"))})
        self._targets = frozenset(targets)

    def handles(self, host: str, path: str) -> bool:
        return self._play and (host, path) in self._targets

    def prepare(self, raw: RawRequest) -> RawRequest | None:
        filtered = self.cassette.filter_request(to_vcr(raw))
        return from_vcr(filtered) if filtered else None

    def play(self, raw: RawRequest) -> Played | None:
        if not self._play:
            return None
        request = to_vcr(raw)
        with self._lock:
            try:
                response = self.cassette.play_response(request)
            except UnhandledHTTPRequestError:
                return None
            index = next(i for i, (_, r) in enumerate(self.cassette.data) if r is response)
            try:
                return self._played_at(index)
            except ConversionError as exc:
                self._unusable[index] = str(exc)
                return None

    def _played_at(self, index: int) -> Played:
        played = self._played.get(index)
        if played is not None:
            return played
        request, response = self.cassette.data[index]
        recorded = from_vcr(request)
        canonical = CanonicalRequest(
            method=recorded.method, host=recorded.netloc, path=recorded.path, body=json_or_none(recorded.body)
        )
        recording = Recording(
            key=f"vcr:{self.label}#{index + 1}",
            request=canonical,
            response=recorded_response(response),
            meta=RecordingMeta(
                recorded_at=self._written_at,
                url=request.uri,
                latency_ms=0.0,
                plugin_version=__version__,
            ),
        )
        where = f"{self.label}, interaction {index + 1} of {self._loaded}"
        played = self._played[index] = Played(recording, recorded, where)
        return played

    def made(self, raw: RawRequest) -> Callable[[Replay], None]:
        request = self.cassette.filter_request(to_vcr(raw)) or to_vcr(raw)
        response: dict[str, Any] = {
            "status": {"code": 0, "message": ""},
            "headers": {},
            "body": {"string": b""},
        }
        with self._lock:
            self.cassette.data.append((request, response))
            self.cassette.play_counts[len(self.cassette.data) - 1] += 1

        def fill(replay: Replay) -> None:
            response.update(to_vcr_response(replay))

        return fill

    def explain(self, raw: RawRequest) -> list[str]:
        if not self._play:
            return [f"  vcr cassette: {self.label} (not read: promptcache_vcr = native)"]
        played = sum(1 for i in range(self._loaded) if self.cassette.play_counts[i])
        lines = [f"  vcr cassette: {self.label} ({self._loaded} interactions, {played} played)"]
        best = self.cassette.find_requests_with_most_matches(to_vcr(raw))
        if best and not best[0][2]:
            lines.append(
                "  every interaction that matches it was played already: the test sent this request more "
                "often than when the cassette was recorded"
            )
        elif best:
            stored, _, failures = best[0]
            lines.append(f"  closest:      {stored.method} {stored.uri}")
            for name, why in failures:
                text = str(why or "differs").splitlines() or ["differs"]
                lines.append(f"    {name}: {text[0]}")
                lines.extend(f"      {line}" for line in text[1:_MAX_EXPLANATION_LINES])
        lines.extend(
            f"  interaction {index + 1} could not be served: {why}"
            for index, why in sorted(self._unusable.items())
        )
        return lines
