"""Where the proxy may forward: named upstreams, parsed from ``NAME=URL`` lines (ini
``promptcache_upstreams``, ``promptcache serve --upstream``), and how a proxy path maps onto one.

The proxy mirrors each upstream's paths under ``/NAME``: ``/openai/v1/chat/completions`` goes to
``https://api.openai.com/v1/chat/completions``. The upstream URL's own path (``/v1``) only says where a
client's base URL points (``OPENAI_BASE_URL=http://127.0.0.1:PORT/openai/v1``), so an upstream written
with or without it forwards the same requests. Nothing else is ever forwarded: a path whose first
segment names no upstream is refused, so the proxy is no open relay.

Light (the standard library only): the plugin validates the ini option at start-up.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

DEFAULT_UPSTREAMS: tuple[str, ...] = (
    "openai=https://api.openai.com/v1",
    "anthropic=https://api.anthropic.com",
    "gemini=https://generativelanguage.googleapis.com",
)

# The variable each SDK reads its base URL from; any other upstream NAME gets NAME_BASE_URL.
_ENV_NAMES: Mapping[str, tuple[str, ...]] = {
    "openai": ("OPENAI_BASE_URL",),
    "anthropic": ("ANTHROPIC_BASE_URL",),
    "gemini": ("GOOGLE_GEMINI_BASE_URL", "GEMINI_BASE_URL"),
}
_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,39}$")
_DEFAULT_PORTS = {"http": 80, "https": 443}
EXAMPLE = "openai=http://127.0.0.1:8080/v1"


class UpstreamError(ValueError):
    """A bad upstream line; the message names the source and shows a good one."""


@dataclass(frozen=True)
class Upstream:
    """A provider the proxy forwards to: ``/NAME/...`` goes to ``scheme://host[:port]/...``."""

    name: str
    scheme: str
    host: str
    port: int | None
    base_path: str  # "" or "/v1": where clients' base URLs point, under /NAME

    @property
    def netloc(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        if self.port is None or _DEFAULT_PORTS[self.scheme] == self.port:
            return host
        return f"{host}:{self.port}"

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.netloc}{self.base_path}"

    @property
    def connect_port(self) -> int:
        return self.port if self.port is not None else _DEFAULT_PORTS[self.scheme]

    @property
    def mount(self) -> str:
        """The proxy path a client's base URL ends in: ``/openai/v1``."""
        return f"/{self.name}{self.base_path}"

    @property
    def env_names(self) -> tuple[str, ...]:
        known = _ENV_NAMES.get(self.name)
        if known is not None:
            return known
        return (re.sub(r"[^A-Z0-9]", "_", self.name.upper()) + "_BASE_URL",)


def parse_upstream(line: str, source: str) -> Upstream:
    """``NAME=URL``: an http(s) URL without credentials, query or fragment."""
    name, sep, url = line.partition("=")
    name, url = name.strip().lower(), url.strip()
    usage = f"{source}: {line.strip()!r} is not NAME=URL (e.g. {EXAMPLE})"
    if not sep or not url:
        raise UpstreamError(usage)
    if not _NAME.match(name):
        raise UpstreamError(f"{usage}; NAME is a lower-case word: letters, digits, - and _")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UpstreamError(f"{usage}: {exc}") from None
    if parts.scheme not in _DEFAULT_PORTS or not parts.hostname:
        raise UpstreamError(f"{usage}: the URL must start with http:// or https:// and name a host")
    if parts.username is not None or parts.password is not None:
        # Credentials come from each client's own request; one in the URL would be printed and sent.
        raise UpstreamError(f"{source}: the URL for {name} holds credentials; the clients send their own")
    if parts.query or parts.fragment:
        raise UpstreamError(f"{usage}: a base URL has no query or fragment")
    return Upstream(
        name=name,
        scheme=parts.scheme,
        host=parts.hostname,
        port=port,
        base_path=parts.path.rstrip("/"),
    )


def parse_upstreams(lines: Iterable[str], source: str, *, defaults: bool = True) -> dict[str, Upstream]:
    """The defaults, then each line in turn: a later line for a name replaces the earlier one."""
    found: dict[str, Upstream] = {}
    if defaults:
        for line in DEFAULT_UPSTREAMS:
            upstream = parse_upstream(line, "default")
            found[upstream.name] = upstream
    for line in lines:
        text = line.strip()
        if text and not text.startswith("#"):
            upstream = parse_upstream(text, source)
            found[upstream.name] = upstream
    return found


@dataclass(frozen=True)
class Route:
    """A proxy request target, mapped onto its upstream: ``path`` as sent (still percent-encoded)."""

    upstream: Upstream
    path: str
    query: str


def route(target: str, upstreams: Mapping[str, Upstream]) -> Route | str:
    """Where a request target goes, or why it goes nowhere."""
    if not target.startswith("/"):
        # An absolute-form target ("GET http://elsewhere/ HTTP/1.1") asks for a forward proxy.
        return "the proxy forwards only paths under /NAME/ of a configured upstream, not absolute URLs"
    path, _, query = target.partition("?")
    name, _, rest = path[1:].partition("/")
    upstream = upstreams.get(name)
    if upstream is None:
        known = ", ".join(f"/{n}/" for n in sorted(upstreams)) or "none"
        return (
            f"no upstream named {name!r} (configured: {known}); add one with --upstream NAME=URL or "
            "ini promptcache_upstreams"
        )
    return Route(upstream=upstream, path="/" + rest, query=query)
