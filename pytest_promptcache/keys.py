"""The canonical request and its key.

Rules (also in the README):
- method, host and port (port only when not the scheme's default), path, and the query parameters that
  are not secret, sorted;
- the JSON body with sorted keys, so whitespace and key order don't matter, minus the ignored fields
  (``promptcache_ignore_fields``: JSON paths such as ``user``, ``metadata.user_id``, ``messages[*].id``),
  with volatile text normalised (``promptcache_normalize``) and secrets replaced;
- a body that is not JSON takes part through the SHA-256 of its bytes; a multipart body without its
  boundary (a random string the client picks for every request);
- of the headers only those that change the answer (``anthropic-version``, ``anthropic-beta``,
  ``openai-beta`` and ``promptcache_key_headers``); never auth, cookies, telemetry or retry counters.
A ``pytest_promptcache_canonical_request`` hook may then change the canonical request as it likes.
The key is the SHA-256 of the canonical request's compact JSON with sorted keys.
"""

from __future__ import annotations

import fnmatch
import hashlib
import itertools
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from pydantic import ValidationError

from . import __version__
from .jsontext import utf8
from .lru import LRU
from .models import CanonicalRequest
from .rules import KeyRules, drop_path
from .scrub import REDACTED, Scrubber, secret_body_values
from .settings import Settings

_DEFAULT_PORTS = {"http": 80, "https": 443}
_BOUNDARY = re.compile(r'boundary="?([^";,]+)"?', re.IGNORECASE)
MULTIPART_BOUNDARY = b"<BOUNDARY>"
# Bumped when what shapes a key changes within a plugin version: keys kept between sessions lapse.
KEY_MEMORY_FORMAT = 1


def without_boundary(content_type: str | None, body: bytes) -> bytes:
    """A multipart body with its boundary replaced by a fixed text: clients pick a random boundary for
    every request, so the same upload would otherwise never key the same twice."""
    if not content_type or not content_type.lower().startswith("multipart/"):
        return body
    match = _BOUNDARY.search(content_type)
    if match is None:
        return body
    return body.replace(match.group(1).encode("latin-1", "replace"), MULTIPART_BOUNDARY)


class HookError(Exception):
    """A canonical-request hook broke the request; the message says how."""


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
    # The path and query as sent, percent-encoded, when the adapter has it at no cost ("": rebuild it
    # from path and query). Only a vcr cassette, which matches URIs as strings, needs it.
    target: str = ""

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
    url = f"{raw.scheme}://{raw.netloc}{scrubber.path(raw.path)}"
    if raw.query:
        parts = [f"{k}={REDACTED if scrubber.is_secret_param(k) else scrubber.text(v)}" for k, v in raw.query]
        url += "?" + "&".join(parts)
    return url


def canonical_data(request: CanonicalRequest) -> dict[str, Any]:
    """What a key hashes: the request as ``model_dump(mode="json", exclude_none=True,
    exclude_defaults=True)`` gives it, built from the fields directly (a tenth of the cost; every call
    not seen before in the session is keyed so)."""
    return canonical_fields(
        request.method,
        request.host,
        request.path,
        request.query,
        request.headers,
        request.body,
        request.body_text,
        request.body_sha256,
        None if request.scope is None else {"name": request.scope.name, "index": request.scope.index},
    )


def canonical_fields(
    method: str,
    host: str,
    path: str,
    query: Sequence[Sequence[str]] | None,
    headers: Mapping[str, str] | None,
    body: Any,
    body_text: str | None,
    body_sha256: str | None,
    scope: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    data: dict[str, Any] = {"method": method, "host": host, "path": path}
    # Left out at their defaults (no query, no key headers, no body), as model_dump leaves them out.
    if query:
        data["query"] = query
    if headers:
        data["headers"] = headers
    if body is not None:
        data["body"] = body
    if body_text is not None:
        data["body_text"] = body_text
    if body_sha256 is not None:
        data["body_sha256"] = body_sha256
    if scope is not None:  # an ordered scope's recording (schema 4): a key of its own
        data["scope"] = scope
    return data


def dumps_canonical(data: Any) -> str:
    """Compact JSON with sorted keys: the text a key is the SHA-256 of."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def canonical_json(request: CanonicalRequest) -> str:
    return dumps_canonical(canonical_data(request))


def key_of(request: CanonicalRequest) -> str:
    return hashlib.sha256(utf8(canonical_json(request))).hexdigest()


class KeyMemory(Protocol):
    """Keys kept between sessions (``store.served_cache``), by a fingerprint of the raw request and
    of everything configured that shapes its key."""

    def recall_key(self, fingerprint: bytes, *, load: bool) -> tuple[str, str | None] | None: ...

    def remember_key(self, fingerprint: bytes, key: str, model: str | None) -> None: ...


class Keyer:
    """Turns raw requests into canonical requests and keys; remembers the key and model of recent ones,
    since a suite sends the same bytes many times and canonicalising costs far more than a lookup.

    Serving needs only the key and the model (``recall``); the canonical request is built again when a
    call is not served (a miss, a live call), so the memo keeps no request alive."""

    MEMO_SIZE = 4096

    def __init__(self, settings: Settings, scrubber: Scrubber, default_rules: KeyRules | None = None) -> None:
        self._settings = settings
        self._scrubber = scrubber
        self._key_headers = frozenset(settings.key_headers)
        self._host_aliases = settings.host_aliases
        self.default_rules = default_rules or KeyRules.build(settings.ignore_fields, settings.normalize)
        self._memo: LRU[tuple[Any, ...], tuple[str, str | None]] = LRU(self.MEMO_SIZE)
        # Each rule set as a number in the memo's keys: a key of strings, bytes and numbers only is let go
        # by the garbage collector's tracking, a key holding the rules object would be walked by every
        # collection for as long as the memo keeps it (thousands of keys: a full pass more per 2,000 calls).
        # Numbers are never reused (next() on a count is atomic): two threads meeting a new rule set agree.
        self._rule_numbers: dict[KeyRules, int] = {}
        self._numbers = itertools.count()
        # Set by the engine once its store exists: keys of earlier sessions.
        self.memory: KeyMemory | None = None
        self._contexts: dict[KeyRules, bytes] = {}

    def canonical(self, raw: RawRequest, rules: KeyRules | None = None) -> CanonicalRequest:
        return self._canonical(raw, rules or self.default_rules)[0]

    def _canonical(self, raw: RawRequest, rules: KeyRules) -> tuple[CanonicalRequest, bool]:
        """The canonical request, and whether it is clean: nothing in it was a secret (nothing scrubbed,
        no credential field), so its key depends only on the request and the configuration."""
        scrub = self._scrubber
        queried = [(k, v) for k, v in raw.query if not scrub.is_secret_param(k)]
        keyed_headers = [
            (k, v) for k, v in raw.headers if k in self._key_headers and not scrub.is_secret_header(k)
        ]
        query = sorted((k, rules.text(scrub.text(v))) for k, v in queried)
        headers = {k: scrub.text(v) for k, v in keyed_headers}
        path = scrub.path(raw.path)
        # Scrubbing is remembered per text: asking again whether it changed anything costs a lookup.
        clean = path == raw.path and all(scrub.text(v) == v for _, v in (*queried, *keyed_headers))
        body: Any = None
        body_text: str | None = None
        body_sha256: str | None = None
        if raw.body:
            try:
                body = json.loads(raw.body)
            except ValueError:
                plain = without_boundary(raw.header("content-type"), raw.body)
                try:
                    text = plain.decode("utf-8")
                    body_text = rules.text(scrub.text(text))
                    clean = clean and scrub.text(text) == text
                    body_sha256 = hashlib.sha256(body_text.encode("utf-8")).hexdigest()
                except UnicodeDecodeError:
                    body_sha256 = hashlib.sha256(plain).hexdigest()
            else:
                # A credential field's value may be repeated elsewhere in the body (or echoed in the
                # answer): learned before anything is scrubbed.
                scrub.learn_values(secret_body_values(body))
                for ignored in rules.ignore:
                    drop_path(body, ignored)
                scrubbed = scrub.json(body, request_body=True)
                clean = clean and scrubbed == body
                body = rules.json(scrubbed)
        # Built unvalidated: every field is text or JSON just parsed (and scrubbed) here, so validating
        # it again would only cost time. A hook's changes are validated below.
        canonical = CanonicalRequest.model_construct(
            method=raw.method.upper(),
            host=self.keyed_host(raw.netloc),
            path=path,
            query=query,
            headers=headers,
            body=body,
            body_text=body_text,
            body_sha256=body_sha256,
        )
        if rules.hook is not None:
            data = canonical.model_dump(mode="json")
            rules.hook(data)
            try:
                canonical = CanonicalRequest.model_validate(data)
            except ValidationError as exc:
                message = f"pytest_promptcache_canonical_request left an invalid request: {exc}"
                raise HookError(message) from None
        return canonical, clean

    def keyed_host(self, netloc: str) -> str:
        """The host a key names: the request's own, or its alias (a test server on a random port,
        staging and production sharing recordings)."""
        for pattern, name in self._host_aliases:
            if fnmatch.fnmatchcase(netloc, pattern):
                return name
        return netloc

    def recall(
        self, raw: RawRequest, rules: KeyRules | None = None, *, wait: bool = True
    ) -> tuple[str, str | None] | None:
        """The key and model of a request keyed before: in this session, or (its key memory loaded) in
        an earlier one; else None. ``wait=False`` on an event loop: nothing is read from disk then."""
        return self._recall(raw, rules or self.default_rules, wait)[0]

    def _recall(
        self, raw: RawRequest, rules: KeyRules, wait: bool
    ) -> tuple[tuple[str, str | None] | None, bytes | None]:
        """``recall``, and the fingerprint it looked up in the key memory (None if it did not)."""
        memo_key = self._memo_key(raw, rules)
        hit = self._memo.get(memo_key, wait=wait)
        if hit is not None:
            return hit, None
        memory = self.memory
        if memory is None or rules.hook is not None:
            return None, None
        fingerprint = self._fingerprint(raw, rules)
        hit = memory.recall_key(fingerprint, load=wait)
        if hit is not None:
            self._memo.put(memo_key, hit, wait=wait)
        return hit, fingerprint

    def recall_or_key(
        self, raw: RawRequest, rules: KeyRules | None = None
    ) -> tuple[str, str | None, CanonicalRequest | None]:
        """The key and model, recalled or built now (with the canonical request it was built from)."""
        rules = rules or self.default_rules
        recalled, fingerprint = self._recall(raw, rules, True)
        if recalled is not None:
            return recalled[0], recalled[1], None
        key, canonical = self._key(raw, rules, True, fingerprint)
        return key, canonical.model, canonical

    def key_for(
        self, raw: RawRequest, rules: KeyRules | None = None, *, wait: bool = True
    ) -> tuple[str, CanonicalRequest]:
        """The key and canonical request, built now (and remembered for ``recall``)."""
        return self._key(raw, rules or self.default_rules, wait, None)

    def _key(
        self, raw: RawRequest, rules: KeyRules, wait: bool, fingerprint: bytes | None
    ) -> tuple[str, CanonicalRequest]:
        canonical, clean = self._canonical(raw, rules)
        key = key_of(canonical)
        # After canonicalising: a credential learned from this body is part of what it was keyed with.
        self._memo.put(self._memo_key(raw, rules), (key, canonical.model), wait=wait)
        memory = self.memory
        if clean and memory is not None and rules.hook is None:
            memory.remember_key(fingerprint or self._fingerprint(raw, rules), key, canonical.model)
        return key, canonical

    def _memo_key(self, raw: RawRequest, rules: KeyRules) -> tuple[Any, ...]:
        number = self._rule_numbers.get(rules)
        if number is None:
            if len(self._rule_numbers) >= self.MEMO_SIZE:
                # A hook's rules are one test's: forgotten, their memo entries just stop matching.
                self._rule_numbers = {}
            number = self._rule_numbers.setdefault(rules, next(self._numbers))
        return (
            number,
            # A secret learned since would be scrubbed from this request now: the memo must not hide it.
            self._scrubber.generation,
            raw.method,
            raw.netloc,
            raw.path,
            raw.query,
            tuple(kv for kv in raw.headers if kv[0] in self._key_headers),
            raw.body,
        )

    def _fingerprint(self, raw: RawRequest, rules: KeyRules) -> bytes:
        """What a key kept between sessions is found by: the request's keyed parts, and a digest of what
        shapes keys (the plugin's version, the settings, the rules, the environment's secrets)."""
        context = self._contexts.get(rules)
        if context is None:
            context = self._contexts[rules] = self._context_digest(rules)
        scrub = self._scrubber
        # Secret parameters and headers take no part in a key, and none of their values is hashed here:
        # nothing derived from a credential is written (a request with one elsewhere is never kept).
        query = [(k, "" if scrub.is_secret_param(k) else v) for k, v in raw.query]
        headers = [
            kv for kv in raw.headers if kv[0] in self._key_headers and not scrub.is_secret_header(kv[0])
        ]
        digest = hashlib.blake2b(context, digest_size=16)
        digest.update(repr((raw.method, raw.netloc, raw.path, query, headers)).encode("utf-8", "replace"))
        digest.update(raw.body)
        return digest.digest()

    def _context_digest(self, rules: KeyRules) -> bytes:
        scrub = self._scrubber
        shape = (
            KEY_MEMORY_FORMAT,
            __version__,
            sorted(self._key_headers),
            list(self._host_aliases),
            sorted(scrub.secret_headers),
            sorted(scrub.secret_params),
            [pattern.pattern for pattern, _ in scrub.patterns],
            rules.ignore,
            [normalizer.source for normalizer in rules.normalizers],
        )
        digest = hashlib.sha256(repr(shape).encode("utf-8", "replace"))
        # The environment's secrets are scrubbed from every request: a value that appears in one only
        # under other secrets would key otherwise. Only this digest of them takes part, never a value.
        for value in sorted(scrub.env_secrets()):
            digest.update(hashlib.sha256(value.encode("utf-8", "replace")).digest())
        return digest.digest()
