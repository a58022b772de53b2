"""Keep secrets out of everything written to disk.

Three layers, because any one of them alone leaks: secret headers and query parameters are dropped by
name; values of secret-looking environment variables and of the credentials a client actually sent are
replaced wherever they appear; and known key shapes are replaced by pattern.
"""

from __future__ import annotations

import base64
import binascii
import re
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from .defaults import SECRET_PATTERN_CASELESS_LITERALS, SECRET_PATTERN_LITERALS, SECRET_PATTERN_NAMES
from .literals import Literals, contains

# Names ending so hold credentials by convention (AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, DB_PASSWORD,
# DJANGO_SECRET_KEY, AZURE_STORAGE_CONNECTION_STRING...). Not a bare "_KEY": PRIMARY_KEY or SORT_KEY hold
# ordinary words, and replacing those all over prompts would change keys and hide text.
SECRET_ENV_SUFFIXES = (
    "_API_KEY",
    "_APIKEY",
    "_TOKEN",
    "_SECRET",
    "_SECRET_KEY",
    "_ACCESS_KEY",
    "_PRIVATE_KEY",
    "_PASSWORD",
    "_PASSWD",
    "_PASSPHRASE",
    "_CONNECTION_STRING",
)
SECRET_ENV_NAMES = frozenset(
    {"API_KEY", "APIKEY", "TOKEN", "SECRET", "SECRET_KEY", "PASSWORD", "ACCESS_KEY", "AWS_ACCESS_KEY_ID"}
)
# Short values ("true", "0", a region name) would be replaced all over innocent text.
MIN_SECRET_LENGTH = 8
REDACTED = "<redacted>"
SENT = "a credential the client sent"
# Credentials learned from calls, newest kept: an AWS SigV4 signature is new on every call, and an
# unbounded set would make every later replacement slower. A client's own key is re-learned by its next
# call, so only a credential echoed by a call far later than the one that sent it could slip through.
MAX_LEARNED = 256
# Scrubbed URL paths remembered: a suite sends a handful of paths, and this runs on every call.
MAX_PATHS = 1024
# Scrubbed strings remembered: a suite resends its system prompts, tool definitions, roles and field names
# with every request, and each string would otherwise cost a search per secret pattern. Only strings up to
# MEMO_MAX_CHARS are kept, and the memo starts over past MEMO_BUDGET characters in all.
MEMO_MAX_CHARS = 16_384
MEMO_BUDGET = 4_000_000

# Fields of a request body that hold credentials for some OpenAI-compatible hosts. Names only, and only
# in requests: response fields such as logprobs' "token" are content.
SECRET_BODY_FIELDS = frozenset({"api_key", "apikey", "api-key", "access_token", "client_secret", "password"})

_SIGV4_PARTS = re.compile(r"\b(?:Credential|Signature)=([^,/\s]+)")


def is_secret_env_name(name: str) -> bool:
    upper = name.upper()
    return upper in SECRET_ENV_NAMES or upper.endswith(SECRET_ENV_SUFFIXES)


def secret_env_values(env: Mapping[str, str]) -> dict[str, str]:
    """Map each secret environment value to its placeholder."""
    found: dict[str, str] = {}
    for name, value in sorted(env.items()):
        if is_secret_env_name(name) and len(value.strip()) >= MIN_SECRET_LENGTH:
            found.setdefault(value.strip(), f"<redacted:{name}>")
    return found


def credential_parts(name: str, value: str) -> list[str]:
    """The secrets in one credential header or parameter value, as they could be echoed back.

    An authorization value is learned without its scheme (the token alone is what a server echoes); an
    AWS SigV4 one as its access key id and signature; HTTP basic also as its decoded user:password and
    password; a cookie as each cookie's value.
    """
    value = value.strip()
    parts = [value]
    scheme, _, rest = value.partition(" ")
    rest = rest.strip()
    lowered = scheme.lower()
    if rest and lowered in ("bearer", "token"):
        parts = [rest]
    elif rest and lowered == "basic":
        parts = [rest, *_basic_parts(rest)]
    elif lowered.startswith("aws4-"):
        parts = _SIGV4_PARTS.findall(rest)
    elif name == "cookie":
        parts = [pair.partition("=")[2].strip() for pair in value.split(";")]
    elif name == "x-amz-credential":
        parts = [value, value.split("/", 1)[0]]
    return [p for p in parts if len(p) >= MIN_SECRET_LENGTH]


def _basic_parts(encoded: str) -> list[str]:
    try:
        decoded = base64.b64decode(encoded, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return []
    return [decoded, decoded.partition(":")[2]]


def secret_body_values(body: Any) -> Iterator[str]:
    """Values of the credential fields of a JSON request body, at any depth."""
    if isinstance(body, dict):
        for k, v in body.items():
            if isinstance(v, str) and isinstance(k, str) and k.lower() in SECRET_BODY_FIELDS:
                if len(v.strip()) >= MIN_SECRET_LENGTH:
                    yield v.strip()
            else:
                yield from secret_body_values(v)
    elif isinstance(body, list):
        for v in body:
            yield from secret_body_values(v)


@dataclass(frozen=True, slots=True)
class SecretMatch:
    """Where a secret is in a text, what replaces it, and what it is: ``$NAME`` for an environment
    variable's value, ``SENT`` for a credential a client sent, or what the pattern it matched finds
    ("an OpenAI key (sk-...)", or "the pattern '...'" for one of the user's)."""

    start: int
    end: int
    placeholder: str
    source: str


class Scrubber:
    def __init__(
        self,
        *,
        secret_headers: Iterable[str],
        secret_params: Iterable[str],
        patterns: Iterable[str],
        env: Mapping[str, str],
    ) -> None:
        self.secret_headers = frozenset(h.lower() for h in secret_headers)
        self.secret_params = frozenset(p.lower() for p in secret_params)
        self._patterns = [
            (re.compile(p), SECRET_PATTERN_NAMES.get(p, f"the pattern {p!r}")) for p in patterns
        ]
        # (pattern, the literals a match starts with, or None when unknown: a user's pattern; a word
        # every match holds in some mix of cases, or None)
        self._searches = [
            (re.compile(p), SECRET_PATTERN_LITERALS.get(p), SECRET_PATTERN_CASELESS_LITERALS.get(p))
            for p in patterns
        ]
        self._literals = Literals({lit for _, lits, _ in self._searches for lit in lits or ()})
        self._env = secret_env_values(env)
        self._learned: dict[str, None] = {}
        # Raw header and parameter values already learned from: most calls resend the same credential.
        # Added to under the lock only; a membership test needs none.
        self._seen: set[str] = set()
        self._lock = threading.Lock()
        # Bumped whenever a value is learned: whatever was scrubbed before may now be scrubbed differently.
        self.generation = 0
        self._ordered = self._order()
        self._paths: dict[str, str] = {}
        # What ``text`` gave each string since the secrets last changed, and the characters held.
        self._memo: dict[str, str] = {}
        self._memo_chars = 0

    def _order(self) -> list[tuple[str, str, str]]:
        values = dict.fromkeys(self._learned, (REDACTED, SENT))
        # An environment variable's name says more than a bare placeholder.
        values.update(
            {v: (p, "$" + p.removeprefix("<redacted:").removesuffix(">")) for v, p in self._env.items()}
        )
        # Longest first, so a secret that contains another is replaced whole.
        return sorted(((v, p, s) for v, (p, s) in values.items()), key=lambda item: -len(item[0]))

    def learn(self, headers: Iterable[tuple[str, str]], query: Iterable[tuple[str, str]] = ()) -> bool:
        """Remember the credentials a client sent (secret headers and query parameters), so they are
        caught wherever they are echoed: in a body, a URL, a stream. True if any was new.

        ``headers`` have lower-case names (as ``RawRequest`` keeps them): this runs on every call.
        """
        seen = self._seen
        found: list[str] = []
        sent: list[str] = []
        for name, value in headers:
            if name in self.secret_headers and value not in seen:
                found += credential_parts(name, value)
                sent.append(value)
        for name, value in query:
            lowered = name.lower()
            if lowered in self.secret_params and value not in seen:
                found += credential_parts(lowered, value)
                sent.append(value)
        if not sent:
            return False  # the usual call: every credential it carries was learned before
        return self.learn_values(found, sent)

    def learn_values(self, values: Iterable[str], sent: Iterable[str] = ()) -> bool:
        """Remember secret values; ``sent`` are the raw values they came from, not parsed again."""
        new = [v for v in values if v not in self._env and v not in self._learned]
        with self._lock:
            if len(self._seen) > MAX_LEARNED * 4:
                self._seen.clear()
            self._seen.update(sent)
            if not new:
                return False
            learned = dict(self._learned)
            for value in new:
                learned[value] = None
            if len(learned) > MAX_LEARNED:
                while len(learned) > MAX_LEARNED:
                    del learned[next(iter(learned))]
                # What was forgotten must be learned again when it is next sent.
                self._seen.clear()
                self._seen.update(sent)
            self._learned = learned
            self._ordered = self._order()
            self._paths = {}
            # After _ordered: a reader that still took the old memo only writes into a discarded dict.
            self._memo = {}
            self._memo_chars = 0
            self.generation += 1
        return True

    @property
    def patterns(self) -> list[tuple[re.Pattern[str], str]]:
        """The secret patterns and what each finds."""
        return list(self._patterns)

    def env_secrets(self) -> list[str]:
        """The environment's secret values (never to be written anywhere)."""
        return list(self._env)

    def is_secret_header(self, name: str) -> bool:
        return name.lower() in self.secret_headers

    def is_secret_param(self, name: str) -> bool:
        return name.lower() in self.secret_params

    def text(self, value: str) -> str:
        size = len(value)
        if size > MEMO_MAX_CHARS:
            return self._scrub_text(value)  # never memoized, and hashing 10 MB costs ~2 ms
        memo = self._memo
        clean = memo.get(value)
        if clean is not None:
            return clean
        clean = self._scrub_text(value)
        if self._memo_chars + size > MEMO_BUDGET:
            memo.clear()
            self._memo_chars = 0
        memo[value] = clean
        self._memo_chars += size
        return clean

    def _scrub_text(self, value: str) -> str:
        for secret, placeholder, _ in self._ordered:
            if contains(value, secret):
                value = value.replace(secret, placeholder)
        gate = self._literals.gate()
        for pattern, literals, caseless in self._searches:
            if gate.open(value, literals, caseless):
                value = pattern.sub(REDACTED, value)
        return value

    def path(self, path: str) -> str:
        """``text`` of a URL path, remembered."""
        paths = self._paths
        clean = paths.get(path)
        if clean is None:
            clean = self.text(path)
            if len(paths) >= MAX_PATHS:
                paths.clear()
            paths[path] = clean
        return clean

    def find(self, value: str) -> list[SecretMatch]:
        """Every secret in ``value``, in order; overlapping ones merged into one match."""
        found: list[SecretMatch] = []
        for secret, placeholder, source in self._ordered:
            start = value.find(secret) if secret and contains(value, secret) else -1
            while start >= 0:
                found.append(SecretMatch(start, start + len(secret), placeholder, source))
                start = value.find(secret, start + len(secret))
        gate = self._literals.gate()
        for (pattern, label), (_, literals, caseless) in zip(self._patterns, self._searches, strict=True):
            if gate.open(value, literals, caseless):
                found += [
                    SecretMatch(m.start(), m.end(), REDACTED, label)
                    for m in pattern.finditer(value)
                    if m.end() > m.start()
                ]
        # Stable: of matches starting at one place, the longest, then values before patterns.
        found.sort(key=lambda m: (m.start, -m.end))
        merged: list[SecretMatch] = []
        for match in found:
            last = merged[-1] if merged else None
            if last is not None and match.start < last.end:
                if match.end > last.end:
                    merged[-1] = SecretMatch(last.start, match.end, last.placeholder, last.source)
                continue
            merged.append(match)
        return merged

    def json(self, value: Any, *, request_body: bool = False) -> Any:
        """A copy of a JSON value with secrets replaced in every string (keys included)."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            out: dict[str, Any] = {}
            for k, v in value.items():
                if request_body and k.lower() in SECRET_BODY_FIELDS and isinstance(v, str) and v:
                    out[self.text(k)] = REDACTED
                else:
                    out[self.text(k)] = self.json(v, request_body=request_body)
            return out
        if isinstance(value, list):
            return [self.json(v, request_body=request_body) for v in value]
        return value

    def headers(self, headers: Iterable[tuple[str, str]]) -> dict[str, str]:
        """Response or request headers without secret ones; repeated names joined as HTTP allows."""
        out: dict[str, str] = {}
        for name, value in headers:
            name = name.lower()
            if name in self.secret_headers:
                continue
            value = self.text(value)
            out[name] = f"{out[name]}, {value}" if name in out else value
        return out
