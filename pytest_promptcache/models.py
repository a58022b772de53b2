"""The recording file format: pydantic models, versioned.

A recording is one JSON file named ``<key>.json``; ``schema_version`` says which format it is. Readers
accept every version they know; writers write the current one; ``promptcache migrate`` upgrades files.

- 1: request, response, meta (recorded_at, test, url, latency_ms, plugin_version).
- 2: meta also holds the call's ``usage`` and ``cost_usd`` at recorded_at, so a replay is priced without
  re-reading the response or asking genai-prices again, and a later price-table change cannot rewrite
  what a recording cost.
- 3: a response may hold an AWS event stream (``event_stream``: Bedrock's converse-stream and
  invoke-with-response-stream). Only such recordings are written as 3 (``schema_version_for``): every
  other recording stays 2, readable by plugin versions that predate 3.
- 4: a request may be scoped (``request.scope``): a recording that belongs to one test, or to one vcr
  cassette, and to one occurrence of its request there. Only scoped recordings are written as 4.

Added within 2 to 4, optional and left out when absent (older versions ignore them): ``meta.usage.source``
(``estimated``: counted by a tokenizer because the response carried no usage; ``free``: an endpoint
that bills nothing) and ``meta.cache_saved_usd``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, GetCoreSchemaHandler, JsonValue
from pydantic_core import core_schema

# What migrate writes, and what every recording without an AWS event stream is written as.
SCHEMA_VERSION: Literal[2] = 2
EVENT_STREAM_SCHEMA_VERSION: Literal[3] = 3
SCOPED_SCHEMA_VERSION: Literal[4] = 4
KNOWN_SCHEMA_VERSIONS = frozenset({1, 2, 3, 4})


class _ParsedFromJson:
    """JSON text can only hold JSON: a value parsed from it needs no check that it is one. Checking
    costs more than parsing (pydantic walks JsonValue in Python), and a recording is parsed from text
    every time it is first served. A value built in Python (a hook's request) is still checked."""

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.json_or_python_schema(
            json_schema=core_schema.any_schema(), python_schema=handler(source)
        )


# JSON content: a request or response body, an event's data.
JsonData = Annotated[JsonValue, _ParsedFromJson()]


class TokenUsage(BaseModel):
    """Tokens of one call, in genai-prices' convention: ``input_tokens`` is the whole input (cache
    reads and writes included), ``output_tokens`` includes reasoning tokens."""

    model_config = ConfigDict(frozen=True, defer_build=True)

    input_tokens: int = 0
    cached_input_tokens: int = 0
    cache_write_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int = 0
    # Where the figures come from: None, the provider's own usage; "estimated", counted with a tokenizer
    # because the response carried none (``estimate.py``); "free", an endpoint that bills no tokens
    # (count_tokens, moderations). Left out of files when None, so recordings read as before.
    source: Literal["estimated", "free"] | None = None

    @property
    def estimated(self) -> bool:
        return self.source == "estimated"

    @property
    def free(self) -> bool:
        return self.source == "free"

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


def model_of(body: Any, path: str) -> str | None:
    """The model a request names: in its JSON body, or (Gemini, Bedrock) in its path."""
    if isinstance(body, dict):
        model = body.get("model")
        if isinstance(model, str):
            return model
    # Gemini puts the model in the path: /v1beta/models/gemini-2.5-flash:generateContent
    if "/models/" in path:
        tail = path.rsplit("/models/", 1)[1]
        return tail.split(":", 1)[0] or None
    # So does Bedrock, before the operation: /model/anthropic.claude-3-haiku-20240307-v1:0/converse
    # (an inference-profile ARN has slashes of its own).
    if "/model/" in path:
        tail = path.split("/model/", 1)[1]
        return tail.rpartition("/")[0] or None
    return None


class RequestScope(BaseModel):
    """Where a scoped recording belongs: ``name`` is a test's node id, or a vcr cassette's path relative
    to the rootdir, and ``index`` says which occurrence of the same request there it answers (0 for the
    first), so a request a test sends three times can get three answers, in order."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    index: int


class CanonicalRequest(BaseModel):
    """What identifies a request: its key is the SHA-256 of this object's canonical JSON."""

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    method: str
    host: str
    path: str
    query: list[tuple[str, str]] = []
    headers: dict[str, str] = {}
    body: JsonData = None
    # A body that is not JSON: its text when it is UTF-8, and always its hash.
    body_text: str | None = None
    body_sha256: str | None = None
    # Schema 4; None (left out of the key) for a recording any test may use.
    scope: RequestScope | None = None

    @property
    def model(self) -> str | None:
        return model_of(self.body, self.path)

    @property
    def endpoint(self) -> str:
        return f"{self.method} {self.host}{self.path}"


class SSEEvent(BaseModel):
    """One server-sent event. ``data`` holds JSON data parsed; ``text`` holds data that is not JSON."""

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    event: str | None = None
    data: JsonData = None
    text: str | None = None
    id: str | None = None
    retry: int | None = None


class EventStreamMessage(BaseModel):
    """One message of an AWS event stream (``application/vnd.amazon.eventstream``).

    ``base64`` is the message exactly as it arrived (prelude, headers, payload, checksums) and is what a
    replay sends. The other fields are a decoded view for review, ignored when replaying: the headers,
    the payload as JSON (or ``text``), and a ``{"bytes": ...}`` payload's bytes decoded (``decoded``,
    what invoke-with-response-stream wraps each chunk of the model's own stream in).
    """

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    headers: dict[str, JsonData] | None = None
    payload: JsonData = None
    text: str | None = None
    decoded: JsonData = None
    base64: str


class RecordedResponse(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    status: int
    headers: dict[str, str] = {}
    # Exactly one of these holds the body: parsed JSON, decoded text, base64 bytes, SSE events, or the
    # messages of an AWS event stream.
    body: JsonData = None
    text: str | None = None
    base64: str | None = None
    events: list[SSEEvent] | None = None
    event_stream: list[EventStreamMessage] | None = None

    @property
    def is_stream(self) -> bool:
        return self.events is not None or self.event_stream is not None


class RecordingMeta(BaseModel):
    model_config = ConfigDict(frozen=True, extra="allow", defer_build=True)

    recorded_at: datetime
    test: str | None = None
    url: str
    latency_ms: float
    plugin_version: str
    # Schema 2. None in a version 1 file; None usage: the response carried none; None cost: unpriced.
    usage: TokenUsage | None = None
    cost_usd: float | None = None
    # What the provider's prompt cache saved this call against uncached prices (negative when a cache
    # write cost more than it saved); None when unpriced, or written before this was kept.
    cache_saved_usd: float | None = None
    # An imported recording: the cassette and interaction it came from ("tests/cassettes/x.yaml #2").
    # Older versions read it as an extra field.
    imported_from: str | None = None


class Recording(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    schema_version: Literal[1, 2, 3, 4] = SCHEMA_VERSION
    key: str
    request: CanonicalRequest
    response: RecordedResponse
    meta: RecordingMeta

    def to_json_data(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True)


def schema_version_for(
    response: RecordedResponse, request: CanonicalRequest | None = None
) -> Literal[2, 3, 4]:
    """The lowest version that holds the recording, so older plugin versions read what they can."""
    if request is not None and request.scope is not None:
        return SCOPED_SCHEMA_VERSION
    return EVENT_STREAM_SCHEMA_VERSION if response.event_stream is not None else SCHEMA_VERSION


@dataclass(frozen=True, slots=True)
class Measured:
    """What one response used and cost: ``usage`` None when it carried none and nothing could be
    counted (or the call failed); ``cost_usd`` None when nobody could price it; ``cache_saved_usd``
    what the provider's prompt cache saved against uncached prices (None when unpriced)."""

    usage: TokenUsage | None = None
    cost_usd: float | None = None
    cache_saved_usd: float | None = None


@dataclass(frozen=True, slots=True)
class PriceFacts:
    """What a recording says of its own price: schema 2 carries the usage and cost measured when it was
    recorded, so its replays are priced without reading its response (unless the user prices its model
    themselves)."""

    key: str
    schema_version: int
    model: str | None
    usage: TokenUsage | None
    cost_usd: float | None
    cache_saved_usd: float | None

    @classmethod
    def of(cls, recording: Recording) -> PriceFacts:
        meta = recording.meta
        request = recording.request
        return cls(
            recording.key,
            recording.schema_version,
            request.model,
            meta.usage,
            meta.cost_usd,
            meta.cache_saved_usd,
        )
