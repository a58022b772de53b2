"""Keep secrets out of everything written to disk.

Three layers, because any one of them alone leaks: secret headers and query parameters are dropped by
name; values of secret-looking environment variables and of the credentials a client actually sent are
replaced wherever they appear; and known key shapes are replaced by pattern.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable, Mapping
from typing import Any

SECRET_ENV_SUFFIXES = ("_API_KEY", "_TOKEN", "_SECRET", "_SECRET_ACCESS_KEY")
# Short values ("true", "0", a region name) would be replaced all over innocent text.
MIN_SECRET_LENGTH = 8
REDACTED = "<redacted>"

# Fields of a request body that hold credentials for some OpenAI-compatible hosts. Names only, and only
# in requests: response fields such as logprobs' "token" are content.
SECRET_BODY_FIELDS = frozenset({"api_key", "apikey", "api-key", "access_token", "client_secret", "password"})


def secret_env_values(env: Mapping[str, str]) -> dict[str, str]:
    """Map each secret environment value to its placeholder."""
    found: dict[str, str] = {}
    for name, value in sorted(env.items()):
        if name.upper().endswith(SECRET_ENV_SUFFIXES) and len(value.strip()) >= MIN_SECRET_LENGTH:
            found.setdefault(value.strip(), f"<redacted:{name}>")
    return found


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
        self._patterns = [re.compile(p) for p in patterns]
        self._values: dict[str, str] = secret_env_values(env)
        self._lock = threading.Lock()
        self._ordered = self._order(self._values)

    @staticmethod
    def _order(values: Mapping[str, str]) -> list[tuple[str, str]]:
        # Longest first, so a secret that contains another is replaced whole.
        return sorted(values.items(), key=lambda kv: -len(kv[0]))

    def learn(self, headers: Iterable[tuple[str, str]]) -> None:
        """Remember credential values a client sent, so they are caught even if echoed in a body.

        ``headers`` have lower-case names (as ``RawRequest`` keeps them): this runs on every call.
        """
        new: dict[str, str] = {}
        for name, value in headers:
            if name not in self.secret_headers:
                continue
            value = value.strip()
            scheme, _, rest = value.partition(" ")
            if rest and scheme.lower() in ("bearer", "basic", "token"):
                value = rest.strip()
            if len(value) >= MIN_SECRET_LENGTH and value not in self._values:
                new[value] = REDACTED
        if new:
            with self._lock:
                self._values = {**self._values, **new}
                self._ordered = self._order(self._values)

    def is_secret_header(self, name: str) -> bool:
        return name.lower() in self.secret_headers

    def is_secret_param(self, name: str) -> bool:
        return name.lower() in self.secret_params

    def text(self, value: str) -> str:
        for secret, placeholder in self._ordered:
            if secret in value:
                value = value.replace(secret, placeholder)
        for pattern in self._patterns:
            value = pattern.sub(REDACTED, value)
        return value

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
