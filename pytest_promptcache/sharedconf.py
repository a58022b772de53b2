"""The shared tier's options (``promptcache_shared = redis://...``): parsed and validated at start-up.

Light (the standard library only): settings are built at every pytest start-up, and the Redis client is
imported only when the first LLM call builds the engine. The URL's password is kept out of every repr and
message: ``display`` is the URL as output may show it.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any
from urllib.parse import unquote, urlsplit

SCHEMES = ("redis", "rediss", "unix")
DEFAULT_PREFIX = "promptcache"
# Loopback or a CI service container answers in a millisecond; a second is a Redis that is not there.
DEFAULT_TIMEOUT = 2.0
MAX_TIMEOUT = 60.0
# Names that go into Redis keys and reports: printable, no spaces, bounded.
_NAME = re.compile(r"[A-Za-z0-9._:/@+-]{1,128}")
_PREFIX = re.compile(r"[A-Za-z0-9._:-]{1,64}")
_AGE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([hdw])\s*$")
_AGE_UNITS = {"h": "hours", "d": "days", "w": "weeks"}


class SharedConfigError(ValueError):
    """A bad shared-tier option; the message names it, says what is accepted, and never holds a password."""


def redacted_url(url: str) -> str:
    """The URL without its password (user, host, port and database kept), for output."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return "<an unparsable URL>"
    if parts.scheme == "unix":
        return f"unix://{parts.path}"
    user = unquote(parts.username) if parts.username else ""
    auth = f"{user}:***@" if parts.password is not None else (f"{user}@" if user else "")
    if ":" in host:  # an IPv6 literal
        host = f"[{host}]"
    netloc = auth + host + (f":{port}" if port is not None else "")
    return f"{parts.scheme}://{netloc}{parts.path}"


def _secrets_of(url: str) -> tuple[str, ...]:
    """The password as it appears in the URL and as decoded, and any ``password=`` query value."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return ()
    found: list[str] = []
    if parts.password:
        found += [parts.password, unquote(parts.password)]
    for pair in parts.query.split("&"):
        name, _, value = pair.partition("=")
        if name.lower() == "password" and value:
            found += [value, unquote(value)]
    return tuple(sorted({s for s in found if s}, key=len, reverse=True))


@dataclass(frozen=True)
class SharedConfig:
    """Where the fleet shares recordings, locks, pacing and the run's spend."""

    url: str = field(repr=False)
    machine: str
    prefix: str = DEFAULT_PREFIX
    # Recordings in Redis expire this long after they were written (None: never).
    ttl: timedelta | None = None
    # The longest any one Redis operation may take, connecting included.
    timeout: float = DEFAULT_TIMEOUT
    # Machines of one run share its budget; None: each session keeps its own.
    run_id: str | None = None

    def __repr__(self) -> str:
        return (
            f"SharedConfig(url={self.display!r}, machine={self.machine!r}, prefix={self.prefix!r}, "
            f"ttl={self.ttl!r}, timeout={self.timeout!r}, run_id={self.run_id!r})"
        )

    @property
    def display(self) -> str:
        return redacted_url(self.url)

    def redact(self, text: str) -> str:
        """``text`` (an error message, say) with the URL's password replaced wherever it appears."""
        for secret in _secrets_of(self.url):
            text = text.replace(secret, "***")
        return text


def _raw(env: Mapping[str, str], env_name: str, ini: Mapping[str, Any], ini_name: str) -> tuple[str, str]:
    value = env.get(env_name, "").strip()
    if value:
        return value, env_name
    return str(ini.get(ini_name) or "").strip(), f"ini {ini_name}"


def _name(value: str, source: str, what: str) -> str:
    if not _NAME.fullmatch(value):
        raise SharedConfigError(
            f"{source}: {value[:40]!r} is not a {what}; use 1 to 128 letters, digits and . _ : / @ + -"
        )
    return value


def default_machine() -> str:
    """This machine's name as reports show it: the host name, cut to what a key may hold."""
    name = re.sub(r"[^A-Za-z0-9._-]", "-", socket.gethostname())[:128]
    return name or "unknown-machine"


def parse_url(url: str, source: str) -> str:
    shown = redacted_url(url)
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        reason = str(exc).replace(url, shown)
        for secret in _secrets_of(url):
            reason = reason.replace(secret, "***")
        raise SharedConfigError(f"{source}: {shown} is not a Redis URL ({reason})") from None
    if parts.scheme not in SCHEMES:
        raise SharedConfigError(
            f"{source}: {shown} is not a Redis URL; write redis://[:PASSWORD@]HOST[:PORT][/DB], "
            "rediss://... for TLS, or unix:///path/to/redis.sock"
        )
    if parts.scheme != "unix" and not parts.hostname:
        raise SharedConfigError(f"{source}: {shown} names no host; write redis://HOST[:PORT][/DB]")
    if port == 0:
        raise SharedConfigError(f"{source}: {shown} has port 0; give the port Redis listens on")
    db = parts.path.strip("/")
    if parts.scheme != "unix" and db and not db.isdigit():
        raise SharedConfigError(f"{source}: {shown}: the database after the host must be a number")
    return url


def parse_ttl(value: str, source: str) -> timedelta:
    match = _AGE.match(value.lower())
    if not match or float(match.group(1)) <= 0:
        raise SharedConfigError(
            f"{source}: {value!r} is not an age; write a number and a unit: 12h, 30d or 2w"
        )
    return timedelta(**{_AGE_UNITS[match.group(2)]: float(match.group(1))})


def parse_timeout(value: str, source: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not 0 < seconds <= MAX_TIMEOUT:
        raise SharedConfigError(
            f"{source}: {value!r} is not a number of seconds greater than 0 and at most "
            f"{MAX_TIMEOUT:g} (e.g. 2)"
        )
    return seconds


def parse_shared(env: Mapping[str, str], ini: Mapping[str, Any]) -> SharedConfig | None:
    """The shared tier's settings (env > ini), or None when no URL is set. Raises SharedConfigError."""
    url, source = _raw(env, "PROMPTCACHE_SHARED", ini, "promptcache_shared")
    if not url:
        return None
    parse_url(url, source)
    machine, machine_source = _raw(env, "PROMPTCACHE_MACHINE", ini, "promptcache_machine")
    run_id, run_source = _raw(env, "PROMPTCACHE_RUN_ID", ini, "promptcache_run_id")
    prefix = str(ini.get("promptcache_shared_prefix") or "").strip() or DEFAULT_PREFIX
    if not _PREFIX.fullmatch(prefix):
        raise SharedConfigError(
            f"ini promptcache_shared_prefix: {prefix[:40]!r} is not a key prefix; use 1 to 64 letters, "
            "digits and . _ : -"
        )
    ttl = str(ini.get("promptcache_shared_ttl") or "").strip()
    timeout = str(ini.get("promptcache_shared_timeout") or "").strip()
    return SharedConfig(
        url=url,
        machine=_name(machine, machine_source, "machine name") if machine else default_machine(),
        prefix=prefix,
        ttl=parse_ttl(ttl, "ini promptcache_shared_ttl") if ttl else None,
        timeout=parse_timeout(timeout, "ini promptcache_shared_timeout") if timeout else DEFAULT_TIMEOUT,
        run_id=_name(run_id, run_source, "run id") if run_id else None,
    )
