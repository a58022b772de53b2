"""The canonical request and its key.

Rules (also in the README):
- method, host and port (port only when not the scheme's default), path, and the query parameters that
  are not secret, sorted;
- the JSON body with sorted keys, so whitespace and key order don't matter, minus the ignored fields
  (``promptcache_ignore_fields``: ``user``, ``metadata.user_id``...); secrets inside it are replaced;
- a body that is not JSON takes part through the SHA-256 of its bytes;
- of the headers only those that change the answer (``anthropic-version``, ``anthropic-beta``,
  ``openai-beta`` and ``promptcache_key_headers``); never auth, cookies, telemetry or retry counters.
The key is the SHA-256 of the canonical request's compact JSON with sorted keys.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from .models import CanonicalRequest
from .scrub import REDACTED, Scrubber
from .settings import Settings

_DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True, slots=True)
class RawRequest:
    """A request as it left the client, independent of which httpx module sent it."""

    method: str
    scheme: str
    host: str
    port: int | None
    path: str
    query: tuple[tuple[str, str], ...]
    headers: tuple[tuple[str, str], ...]
    body: bytes

    @property
    def netloc(self) -> str:
        host = self.host.lower()
        if ":" in host:  # an IPv6 literal
            host = f"[{host}]"
        if self.port is None or _DEFAULT_PORTS.get(self.scheme) == self.port:
            return host
        return f"{host}:{self.port}"

    def header(self, name: str) -> str | None:
        for k, v in self.headers:
            if k == name:
                return v
        return None


def display_url(raw: RawRequest, scrubber: Scrubber) -> str:
    """The URL with secret query values hidden: safe to print and to store."""
    url = f"{raw.scheme}://{raw.netloc}{raw.path}"
    if raw.query:
        parts = [f"{k}={REDACTED if scrubber.is_secret_param(k) else scrubber.text(v)}" for k, v in raw.query]
        url += "?" + "&".join(parts)
    return url


def canonical_json(request: CanonicalRequest) -> str:
    data = request.model_dump(mode="json", exclude_none=True, exclude_defaults=True)
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def key_of(request: CanonicalRequest) -> str:
    return hashlib.sha256(canonical_json(request).encode("utf-8")).hexdigest()


def _drop_path(body: Any, path: list[str]) -> None:
    if not path:
        return
    head, rest = path[0], path[1:]
    if isinstance(body, list):
        for item in body:
            _drop_path(item, path)
    elif isinstance(body, dict) and head in body:
        if rest:
            _drop_path(body[head], rest)
        else:
            del body[head]


class Keyer:
    """Turns raw requests into canonical requests and keys; remembers recent ones, since a suite sends
    the same bytes many times and canonicalising costs far more than a dict lookup."""

    MEMO_SIZE = 4096

    def __init__(self, settings: Settings, scrubber: Scrubber) -> None:
        self._settings = settings
        self._scrubber = scrubber
        self._key_headers = frozenset(settings.key_headers)
        self._ignore = [f.split(".") for f in settings.ignore_fields]
        self._memo: OrderedDict[tuple[Any, ...], tuple[str, CanonicalRequest]] = OrderedDict()
        self._lock = threading.Lock()

    def canonical(self, raw: RawRequest) -> CanonicalRequest:
        scrub = self._scrubber
        query = sorted((k, scrub.text(v)) for k, v in raw.query if not scrub.is_secret_param(k))
        headers = {
            k: scrub.text(v)
            for k, v in raw.headers
            if k in self._key_headers and not scrub.is_secret_header(k)
        }
        body: Any = None
        body_text: str | None = None
        body_sha256: str | None = None
        if raw.body:
            try:
                body = json.loads(raw.body)
            except ValueError:
                try:
                    body_text = scrub.text(raw.body.decode("utf-8"))
                    body_sha256 = hashlib.sha256(body_text.encode("utf-8")).hexdigest()
                except UnicodeDecodeError:
                    body_sha256 = hashlib.sha256(raw.body).hexdigest()
            else:
                for path in self._ignore:
                    _drop_path(body, path)
                body = scrub.json(body, request_body=True)
        return CanonicalRequest(
            method=raw.method.upper(),
            host=raw.netloc,
            path=raw.path,
            query=query,
            headers=headers,
            body=body,
            body_text=body_text,
            body_sha256=body_sha256,
        )

    def key_for(self, raw: RawRequest) -> tuple[str, CanonicalRequest]:
        memo_key = (
            raw.method,
            raw.netloc,
            raw.path,
            raw.query,
            tuple(kv for kv in raw.headers if kv[0] in self._key_headers),
            raw.body,
        )
        with self._lock:
            hit = self._memo.get(memo_key)
            if hit is not None:
                self._memo.move_to_end(memo_key)
                return hit
        canonical = self.canonical(raw)
        result = (key_of(canonical), canonical)
        with self._lock:
            self._memo[memo_key] = result
            if len(self._memo) > self.MEMO_SIZE:
                self._memo.popitem(last=False)
        return result
