"""What the memory tier keeps of a recording, and reading a recording to serve it.

A recording not served before in the process is read here: its file parsed by pydantic-core, checked to
be in the form recordings are written in, and its response turned straight into the chunks it replays as,
with no model built in between (building the models cost more than everything else a first serve does,
and the first call of a session paid for building their schemas). A file in any other form (an older or
hand-edited one, a wrong type, an unknown field, a date pydantic may read otherwise) is read as
``read_recording`` reads it: the models decide, and say what is wrong. The check accepts nothing the
models refuse (``tests/unit/test_served.py`` holds it to that).
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any, NamedTuple

from ..jsontext import loads_bounded
from ..keys import canonical_fields, dumps_canonical
from ..limits import DEFAULT_MAX_RECORDING_SIZE
from ..models import KNOWN_SCHEMA_VERSIONS, Measured, PriceFacts, Recording, TokenUsage, model_of
from ..replay import Replay, build_replay, replay_of_data
from .files import (
    SUFFIX,
    read_recording_text_info,
    recording_from_text,
    validated_recording,
)

# Asked once per recording read or saved: its price, from what it says of itself, or (rarely) from the
# whole recording, which the second argument builds.
Pricer = Callable[[PriceFacts, Callable[[], Recording]], Measured]


def carried_price(facts: PriceFacts, recording: Callable[[], Recording]) -> Measured:
    return Measured(facts.usage, facts.cost_usd, facts.cache_saved_usd)


# What ``carried_price`` prices under, as ``usage.PriceBook.identity`` names a price book's prices.
CARRIED_PRICES = "carried"


class StoredRecording:
    """What serving a recording needs: its response ready to serve, when and by which test it was
    recorded, and its price. Not the parsed recording: a session that serves thousands of recordings
    would keep tens of objects alive for each (every dict and string of its request and response) to the
    end, and the last garbage collection walks them all.

    One saved in this session keeps its recording until first served and builds its replay then: saving
    happens while the client reads the stream's last chunk, and a response is seldom asked for again in
    the session that recorded it.
    """

    __slots__ = ("_recording", "_replay", "key", "price", "recorded_at", "test")

    def __init__(
        self,
        key: str,
        price: Measured,
        recorded_at: datetime,
        test: str | None,
        replay: Replay | None = None,
        recording: Recording | None = None,
    ) -> None:
        self.key = key
        self.price = price
        self.recorded_at = recorded_at
        self.test = test
        self._replay = replay
        self._recording = recording

    @classmethod
    def of(cls, recording: Recording, pricer: Pricer, *, lazy: bool = False) -> StoredRecording:
        meta = recording.meta
        price = pricer(PriceFacts.of(recording), lambda: recording)
        if lazy:
            return cls(recording.key, price, meta.recorded_at, meta.test, recording=recording)
        return cls(recording.key, price, meta.recorded_at, meta.test, build_replay(recording.response))

    @property
    def replay(self) -> Replay:
        replay = self._replay
        if replay is not None:
            return replay
        recording = self._recording
        if recording is None:  # another thread has just built it (it sets the replay first)
            assert self._replay is not None
            return self._replay
        # Two threads may build it at once: both get equal replays, and one is kept.
        replay = self._replay = build_replay(recording.response)
        self._recording = None
        return replay


class Kept(NamedTuple):
    """What serving a recording needs, as plain values: what the served-form cache keeps between
    sessions (``served_cache``), and what a ``StoredRecording`` is built from.

    Its price is the one the session that read the file gave it, kept with the prices it was given under
    (the cache's file names them): a recording that carries none (an older file, a hand-made one) is
    priced by counting its tokens, which the next session need not do again."""

    status: int
    headers: tuple[tuple[str, str], ...]
    chunks: tuple[bytes, ...]
    recorded_at: str
    test: str | None
    usage: tuple[int, int, int, int, int, str | None] | None
    cost_usd: float | None
    cache_saved_usd: float | None

    @classmethod
    def of(cls, price: Measured, recorded_at: datetime, test: str | None, replay: Replay) -> Kept:
        usage = price.usage
        counts: Any = None if usage is None else tuple(getattr(usage, name) for name in _COUNT_ORDER)
        return cls(
            replay.status,
            tuple(replay.headers),
            tuple(replay.chunks),
            recorded_at.isoformat(),
            test,
            counts,
            price.cost_usd,
            price.cache_saved_usd,
        )

    def stored(self, key: str) -> StoredRecording:
        counts = self.usage
        usage = None
        if counts is not None:
            fields: dict[str, Any] = dict(zip(_COUNT_ORDER, counts, strict=True))
            if fields["source"] is None:
                del fields["source"]  # as a file without one reads
            usage = TokenUsage(**fields)  # validating a flat model costs less than model_construct
        price = Measured(usage, self.cost_usd, self.cache_saved_usd)
        replay = Replay(self.status, self.headers, self.chunks)
        return StoredRecording(key, price, datetime.fromisoformat(self.recorded_at), self.test, replay)


def load(path: Path, pricer: Pricer, max_size: int = DEFAULT_MAX_RECORDING_SIZE) -> StoredRecording:
    """The recording in ``path``, validated as ``read_recording`` validates it, ready to serve.

    Raises FileNotFoundError when there is no file, CorruptRecording when it is not a usable recording.
    """
    return load_kept(path, pricer, max_size)[0]


def load_kept(
    path: Path, pricer: Pricer, max_size: int = DEFAULT_MAX_RECORDING_SIZE
) -> tuple[StoredRecording, Kept, os.stat_result | None, str]:
    """``load``, with the recording's plain form, the status of the file it was read from (None for a
    symbolic link) and its text."""
    text, info = read_recording_text_info(path, max_size)
    key = path.name.removesuffix(SUFFIX)
    try:
        data = loads_bounded(text)
    except ValueError:
        data = None  # the models' reading says what is wrong
    if isinstance(data, dict):
        written = _written_form(key, data)
        if written is not None:
            facts, recorded_at, test, replay = written
            price = pricer(facts, lambda: validated_recording(path, data))
            stored = StoredRecording(key, price, recorded_at, test, replay)
            return stored, Kept.of(price, recorded_at, test, replay), info, text
    recording = recording_from_text(path, text)
    stored = StoredRecording.of(recording, pricer)
    kept = Kept.of(stored.price, recording.meta.recorded_at, recording.meta.test, stored.replay)
    return stored, kept, info, text


def _written_form(key: str, data: dict[str, Any]) -> tuple[PriceFacts, datetime, str | None, Replay] | None:
    """The recording's parts if ``data`` is in the form recordings are written in and its key holds;
    else None."""
    version = data.get("schema_version")
    request: Any = data.get("request")
    response: Any = data.get("response")
    meta: Any = data.get("meta")
    if not (
        data.keys() <= _RECORDING_FIELDS
        and type(version) is int
        and version in KNOWN_SCHEMA_VERSIONS
        and data.get("key") == key
        and _is_request(request)
        and _is_response(response)
        and _is_meta(meta)
    ):
        return None
    recorded_at = _timestamp(meta["recorded_at"])
    if recorded_at is None:
        return None
    canonical = canonical_fields(
        request["method"],
        request["host"],
        request["path"],
        request.get("query"),
        request.get("headers"),
        request.get("body"),
        request.get("body_text"),
        request.get("body_sha256"),
        request.get("scope"),
    )
    if hashlib.sha256(dumps_canonical(canonical).encode("utf-8")).hexdigest() != key:
        return None  # edited after recording: read_recording says so
    usage = meta.get("usage")
    cost = meta.get("cost_usd")
    saved = meta.get("cache_saved_usd")
    facts = PriceFacts(
        key,
        version,
        model_of(request.get("body"), request["path"]),
        None if usage is None else TokenUsage(**usage),  # checked above; cheaper than model_construct
        None if cost is None else float(cost),
        None if saved is None else float(saved),
    )
    return facts, recorded_at, meta.get("test"), replay_of_data(response)


# The fields of each part, as the models define them (a test holds them equal). Meta may hold others.
_RECORDING_FIELDS = frozenset({"schema_version", "key", "request", "response", "meta"})
_REQUEST_FIELDS = frozenset(
    {"method", "host", "path", "query", "headers", "body", "body_text", "body_sha256", "scope"}
)
_RESPONSE_FIELDS = frozenset({"status", "headers", "body", "text", "base64", "events", "event_stream"})
_EVENT_FIELDS = frozenset({"event", "data", "text", "id", "retry"})
_MESSAGE_FIELDS = frozenset({"headers", "payload", "text", "decoded", "base64"})
_META_FIELDS = frozenset(
    {
        "recorded_at",
        "test",
        "url",
        "latency_ms",
        "plugin_version",
        "usage",
        "cost_usd",
        "cache_saved_usd",
        "imported_from",
    }
)
# A usage's fields in the order ``Kept`` holds them: the token counts, then their source.
_COUNT_ORDER = (
    "input_tokens",
    "cached_input_tokens",
    "cache_write_tokens",
    "output_tokens",
    "reasoning_tokens",
    "source",
)
_COUNT_FIELDS = frozenset(_COUNT_ORDER[:-1])
_USAGE_FIELDS = frozenset(_COUNT_ORDER)
_USAGE_SOURCES = frozenset({"estimated", "free"})
# How recordings write their time: ISO 8601 with a zone, at most microseconds. Read by
# datetime.fromisoformat exactly as pydantic reads it; any other spelling is left to pydantic.
_TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,6})?(?:Z|[+-]\d{2}:\d{2})")


def _timestamp(text: str) -> datetime | None:
    if _TIMESTAMP.fullmatch(text) is None:
        return None
    try:
        return datetime.fromisoformat(text)
    except ValueError:  # a 13th month: pydantic refuses it, and says so
        return None


def _str(value: Any) -> bool:
    return type(value) is str


def _opt_str(value: Any) -> bool:
    return value is None or type(value) is str


def _number(value: Any) -> bool:
    return type(value) is int or type(value) is float


def _str_map(value: Any) -> bool:
    return type(value) is dict and all(type(v) is str for v in value.values())


def _is_request(request: Any) -> bool:
    if type(request) is not dict or not request.keys() <= _REQUEST_FIELDS:
        return False
    query = request.get("query", [])
    return (
        _str(request.get("method"))
        and _str(request.get("host"))
        and _str(request.get("path"))
        and type(query) is list
        and all(type(pair) is list and len(pair) == 2 and _str(pair[0]) and _str(pair[1]) for pair in query)
        and _str_map(request.get("headers", {}))
        and _opt_str(request.get("body_text"))
        and _opt_str(request.get("body_sha256"))
        and _is_scope(request.get("scope"))
    )


def _is_scope(scope: Any) -> bool:
    return scope is None or (
        type(scope) is dict
        and scope.keys() == {"name", "index"}
        and _str(scope["name"])
        and type(scope["index"]) is int
    )


def _is_response(response: Any) -> bool:
    if type(response) is not dict or not response.keys() <= _RESPONSE_FIELDS:
        return False
    events, messages = response.get("events"), response.get("event_stream")
    return (
        type(response.get("status")) is int
        and _str_map(response.get("headers", {}))
        and _opt_str(response.get("text"))
        and _opt_str(response.get("base64"))
        and (events is None or (type(events) is list and all(_is_event(ev) for ev in events)))
        and (messages is None or (type(messages) is list and all(_is_message(m) for m in messages)))
    )


def _is_event(event: Any) -> bool:
    if type(event) is not dict or not event.keys() <= _EVENT_FIELDS:
        return False
    retry = event.get("retry")
    return (
        _opt_str(event.get("event"))
        and _opt_str(event.get("text"))
        and _opt_str(event.get("id"))
        and (retry is None or type(retry) is int)
    )


def _is_message(message: Any) -> bool:
    if type(message) is not dict or not message.keys() <= _MESSAGE_FIELDS:
        return False
    headers = message.get("headers")
    return (
        _str(message.get("base64"))
        and _opt_str(message.get("text"))
        and (headers is None or type(headers) is dict)
    )


def _is_meta(meta: Any) -> bool:
    if type(meta) is not dict or not meta.keys() <= _META_FIELDS:
        return False
    usage, cost, saved = meta.get("usage"), meta.get("cost_usd"), meta.get("cache_saved_usd")
    return (
        _str(meta.get("recorded_at"))
        and _str(meta.get("url"))
        and _number(meta.get("latency_ms"))
        and _str(meta.get("plugin_version"))
        and _opt_str(meta.get("test"))
        and _opt_str(meta.get("imported_from"))
        and (cost is None or _number(cost))
        and (saved is None or _number(saved))
        and (usage is None or _is_usage(usage))
    )


def _is_usage(usage: Any) -> bool:
    if type(usage) is not dict or not usage.keys() <= _USAGE_FIELDS:
        return False
    source = usage.get("source")
    return (source is None or (type(source) is str and source in _USAGE_SOURCES)) and all(
        type(count) is int for name, count in usage.items() if name != "source"
    )
