"""One validated settings object for a session, and the per-test options a marker may change.

Precedence is CLI > environment > ini; the plugin collects the raw values and this module decides.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any

from .choices import SCOPES, VCR_MODES, ChoiceError, Drift, parse_choice
from .defaults import (
    AWS_ACCESS_KEY_ID_PATTERN,
    DEFAULT_ENDPOINTS,
    DEFAULT_GUARDED_HOSTS,
    DEFAULT_KEY_HEADERS,
    DEFAULT_SECRET_HEADERS,
    DEFAULT_SECRET_PARAMS,
    DEFAULT_SECRET_PATTERNS,
    SECRET_PATTERN_NAMES,
)
from .endpoints import EndpointPattern, default_endpoints, parse_endpoints
from .errors import SettingsError
from .limits import LimitError, Limits
from .prices import ModelPrice, PriceError, parse_prices
from .rules import KeyRules, RuleError
from .sharedconf import SharedConfig, SharedConfigError, parse_shared

__all__ = [
    "AWS_ACCESS_KEY_ID_PATTERN",
    "DEFAULT_ENDPOINTS",
    "DEFAULT_GUARDED_HOSTS",
    "DEFAULT_KEY_HEADERS",
    "DEFAULT_SECRET_HEADERS",
    "DEFAULT_SECRET_PARAMS",
    "DEFAULT_SECRET_PATTERNS",
    "SECRET_PATTERN_NAMES",
    "EndpointPattern",
    "Expiry",
    "Mode",
    "Settings",
    "SettingsError",
    "build_settings",
    "parse_endpoints",
]


class Mode(StrEnum):
    REPLAY = "replay"
    RECORD = "record"
    REWRITE = "rewrite"
    OFF = "off"


MODES_HELP = ", ".join(m.value for m in Mode)


class Expiry(StrEnum):
    WARN = "warn"
    FAIL = "fail"
    RERECORD = "rerecord"


def parse_mode(value: str, source: str) -> Mode:
    try:
        return Mode(value.strip().lower())
    except ValueError:
        raise SettingsError(f"{source}: unknown mode {value!r}; valid modes are {MODES_HELP}") from None


def parse_count(value: str, source: str, minimum: int = 0) -> int:
    try:
        number = int(value)
    except ValueError:
        raise SettingsError(f"{source}: {value!r} is not a whole number") from None
    if number < minimum:
        raise SettingsError(f"{source}: must be at least {minimum}, got {number}")
    return number


@dataclass(frozen=True)
class Settings:
    """A plain dataclass, not a pydantic model: settings are built at every pytest start-up, also for
    suites that never call an LLM, and importing pydantic would cost them tens of milliseconds."""

    cassette_dir: Path
    mode: Mode = Mode.REPLAY
    normalize: tuple[str, ...] = ()
    max_age: timedelta | None = None
    on_expiry: Expiry = Expiry.WARN
    # None: exact matching only. A threshold in (0, 1]: replay may serve the most similar recording.
    similar_threshold: float | None = None
    endpoints: tuple[EndpointPattern, ...] = field(default_factory=default_endpoints)
    ignore_fields: tuple[str, ...] = ()
    key_headers: tuple[str, ...] = DEFAULT_KEY_HEADERS
    # (pattern, name): a request to a host:port matching the pattern is keyed as sent to ``name``.
    host_aliases: tuple[tuple[str, str], ...] = ()
    secret_headers: tuple[str, ...] = DEFAULT_SECRET_HEADERS
    secret_params: tuple[str, ...] = DEFAULT_SECRET_PARAMS
    secret_patterns: tuple[str, ...] = DEFAULT_SECRET_PATTERNS
    # Parsed recordings kept in memory; enough for a large suite, bounded so a huge one cannot balloon.
    memory_size: int = 4096
    prices: Mapping[str, ModelPrice] = field(default_factory=dict)
    budget_usd: float | None = None
    # Where processes coordinate (key locks, pacing, the session's spend); None: a temp directory.
    state_dir: Path | None = None
    record_rpm: int | None = None
    record_tpm: int | None = None
    record_retries: int = 0
    # Replay refuses connections no adapter handled to these hosts and to the recordings' hosts.
    guard: bool = True
    guard_hosts: tuple[str, ...] = DEFAULT_GUARDED_HOSTS
    # Replay sets placeholder API keys the environment lacks, so SDK constructors start.
    placeholder_keys: bool = True
    # File sizes and waits: promptcache_max_recording_size, _flight_timeout, _record_max_wait.
    limits: Limits = field(default_factory=Limits)
    # promptcache_shared: the Redis tier the machines of a fleet share; None: this machine alone.
    shared: SharedConfig | None = None
    # promptcache_scope = test: every test gets recordings of its own, in order (ordered.py).
    test_scope: bool = False
    # @pytest.mark.vcr tests: served from their cassettes first ("cassettes"), from recordings only
    # ("native"), or left alone ("off"); and what a body that drifted from its cassette's does.
    vcr: str = "cassettes"
    vcr_drift: Drift = Drift.WARN

    def is_llm_endpoint(self, host: str, path: str) -> bool:
        return any(p.matches(host, path) for p in self.endpoints)


def ini_text(value: Any) -> str:
    """An ini value as text, "" when unset. Typed values count (pytest's int, float and bool options,
    TOML numbers): 0 and false are values, not the absence of one."""
    return "" if value is None else str(value).strip()


def _lines(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [v for v in value.splitlines() if v.strip()]
    return [str(v) for v in value if str(v).strip()]


def parse_budget(value: str, source: str) -> float:
    try:
        budget = float(value.strip().removeprefix("$"))
    except ValueError:
        raise SettingsError(f"{source}: {value!r} is not an amount of US dollars (e.g. 2.50)") from None
    if not math.isfinite(budget) or budget < 0:
        raise SettingsError(f"{source}: the budget must be a finite amount of 0 or more, got {value!r}")
    return budget


_AGE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([hdw])\s*$")
_AGE_UNITS = {"h": "hours", "d": "days", "w": "weeks"}


def parse_age(value: str, source: str) -> timedelta:
    match = _AGE.match(value.lower())
    if not match:
        raise SettingsError(f"{source}: {value!r} is not an age; write a number and a unit: 12h, 30d or 2w")
    return timedelta(**{_AGE_UNITS[match.group(2)]: float(match.group(1))})


def parse_match(value: str, source: str) -> float | None:
    text = value.strip().lower()
    if text in ("", "exact"):
        return None
    kind, _, threshold = text.partition(":")
    if kind == "similar":
        try:
            number = float(threshold)
        except ValueError:
            number = -1.0
        if 0 < number <= 1:
            return number
    raise SettingsError(
        f"{source}: {value!r} is not a matching rule; use 'exact' (the default) or 'similar:THRESHOLD' "
        "with a threshold in (0, 1], e.g. similar:0.9"
    )


_SWITCHES = {
    **dict.fromkeys(("on", "true", "yes", "1"), True),
    **dict.fromkeys(("off", "false", "no", "0"), False),
}


def parse_switch(value: Any, name: str, default: bool) -> bool:
    text = ini_text(value).lower()
    if not text:
        return default
    if text not in _SWITCHES:
        raise SettingsError(f"{name}: {value!r} is neither on nor off")
    return _SWITCHES[text]


def parse_host_aliases(lines: Iterable[str]) -> tuple[tuple[str, str], ...]:
    """ini ``promptcache_host_aliases``: ``PATTERN = NAME`` a line, ``*`` matching any characters."""
    aliases: list[tuple[str, str]] = []
    for line in lines:
        pattern, sep, name = line.partition("=")
        pattern, name = pattern.strip().lower(), name.strip().lower()
        if not sep or not pattern or not name or any(c in name for c in "*/ "):
            raise SettingsError(
                f"promptcache_host_aliases: {line.strip()!r} is not 'HOST[:PORT] = NAME' (patterns may "
                "use *, e.g. '127.0.0.1:* = test-server' or '* = any-host')"
            )
        aliases.append((pattern, name))
    return tuple(aliases)


def parse_key_headers(lines: Iterable[str]) -> tuple[str, ...]:
    """ini ``promptcache_key_headers``: a name adds a header to the defaults, ``-name`` removes one."""
    entries = [h.strip().lower() for h in lines]
    added = [h for h in entries if not h.startswith("-")]
    removed = {h[1:].strip() for h in entries if h.startswith("-")}
    for name in sorted(removed):
        if name not in DEFAULT_KEY_HEADERS or name in added:
            raise SettingsError(
                f"promptcache_key_headers: '-{name}' removes only a default key header that is not also "
                f"added; the defaults are {', '.join(DEFAULT_KEY_HEADERS)}"
            )
    return tuple(h for h in dict.fromkeys([*DEFAULT_KEY_HEADERS, *added]) if h not in removed)


def _optional_count(ini: Mapping[str, Any], name: str, minimum: int) -> int | None:
    raw = ini_text(ini.get(name))
    return parse_count(raw, name, minimum) if raw else None


def build_settings(
    *,
    rootdir: Path,
    cli_mode: str | None,
    cli_dir: str | None,
    env: Mapping[str, str],
    ini: Mapping[str, Any],
    cli_budget: str | None = None,
    cli_max_age: str | None = None,
    cli_match: str | None = None,
) -> Settings:
    """Combine raw option values (CLI > env > ini) into validated settings."""
    if cli_mode is not None:
        mode = parse_mode(cli_mode, "--promptcache")
    elif env.get("PROMPTCACHE_MODE", "").strip():
        mode = parse_mode(env["PROMPTCACHE_MODE"], "PROMPTCACHE_MODE")
    elif ini_text(ini.get("promptcache_mode")):
        mode = parse_mode(str(ini["promptcache_mode"]), "ini promptcache_mode")
    else:
        mode = Mode.REPLAY

    raw_dir = cli_dir or ini_text(ini.get("promptcache_dir")) or "cassettes"
    cassette_dir = (rootdir / Path(raw_dir).expanduser()).resolve()
    if cassette_dir.exists() and not cassette_dir.is_dir():
        raise SettingsError(f"cassette directory {cassette_dir} exists and is not a directory")

    extra_secret_headers = [h.lower() for h in _lines(ini.get("promptcache_secret_headers"))]
    extra_secret_params = [p.lower() for p in _lines(ini.get("promptcache_secret_params"))]
    key_headers = parse_key_headers(_lines(ini.get("promptcache_key_headers")))
    secret_headers = tuple(dict.fromkeys([*DEFAULT_SECRET_HEADERS, *extra_secret_headers]))
    clash = sorted(set(key_headers) & set(secret_headers))
    if clash:
        raise SettingsError(
            f"promptcache_key_headers: {', '.join(clash)} carry secrets and can never take part in a key"
        )
    memory_raw = ini_text(ini.get("promptcache_memory_size"))
    try:
        prices = parse_prices(_lines(ini.get("promptcache_prices")))
    except PriceError as exc:
        raise SettingsError(str(exc)) from None
    state_raw = ini_text(ini.get("promptcache_state_dir"))
    ignore_fields = tuple(_lines(ini.get("promptcache_ignore_fields")))
    normalize = tuple(_lines(ini.get("promptcache_normalize")))
    try:
        KeyRules.build(ignore_fields, normalize)
    except RuleError as exc:
        raise SettingsError(str(exc)) from None
    age_raw = cli_max_age if cli_max_age is not None else ini_text(ini.get("promptcache_max_age"))
    max_age = parse_age(age_raw, "--promptcache-max-age / promptcache_max_age") if age_raw else None
    expiry_raw = (ini_text(ini.get("promptcache_on_expiry")) or "warn").lower()
    try:
        on_expiry = Expiry(expiry_raw)
    except ValueError:
        raise SettingsError(
            f"promptcache_on_expiry: {expiry_raw!r} is not one of {', '.join(e.value for e in Expiry)}"
        ) from None
    match_raw = cli_match if cli_match is not None else ini_text(ini.get("promptcache_match"))
    similar = parse_match(match_raw, "--promptcache-match / promptcache_match")
    extra_patterns = _lines(ini.get("promptcache_secret_patterns"))
    budget_ini = ini_text(ini.get("promptcache_budget"))
    if cli_budget is not None:
        budget: float | None = parse_budget(cli_budget, "--promptcache-budget")
    elif budget_ini:
        budget = parse_budget(budget_ini, "ini promptcache_budget")
    else:
        budget = None
    for pattern in extra_patterns:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise SettingsError(f"promptcache_secret_patterns: {pattern!r} is not a regex: {exc}") from None
    try:
        limits = Limits.from_ini(ini)
        words = [
            parse_choice(ini.get(name), name, choices)
            for name, choices in (
                ("promptcache_scope", SCOPES),
                ("promptcache_vcr", VCR_MODES),
                ("promptcache_vcr_drift", Drift),
            )
        ]
    except (LimitError, ChoiceError) as exc:
        raise SettingsError(str(exc)) from None
    try:
        shared = parse_shared(env, ini)
    except SharedConfigError as exc:
        raise SettingsError(str(exc)) from None
    return Settings(
        mode=mode,
        cassette_dir=cassette_dir,
        endpoints=parse_endpoints(_lines(ini.get("promptcache_endpoints"))),
        ignore_fields=ignore_fields,
        normalize=normalize,
        max_age=max_age,
        on_expiry=on_expiry,
        similar_threshold=similar,
        key_headers=key_headers,
        host_aliases=parse_host_aliases(_lines(ini.get("promptcache_host_aliases"))),
        secret_headers=secret_headers,
        secret_params=tuple(dict.fromkeys([*DEFAULT_SECRET_PARAMS, *extra_secret_params])),
        secret_patterns=(*DEFAULT_SECRET_PATTERNS, *extra_patterns),
        memory_size=parse_count(memory_raw, "promptcache_memory_size", 1) if memory_raw else 4096,
        prices=prices,
        budget_usd=budget,
        state_dir=(rootdir / state_raw).resolve() if state_raw else None,
        record_rpm=_optional_count(ini, "promptcache_record_rpm", 1),
        record_tpm=_optional_count(ini, "promptcache_record_tpm", 1),
        record_retries=_optional_count(ini, "promptcache_record_retries", 0) or 0,
        guard=parse_switch(ini.get("promptcache_guard"), "promptcache_guard", True),
        guard_hosts=(
            *DEFAULT_GUARDED_HOSTS,
            *(h.lower() for h in _lines(ini.get("promptcache_guard_hosts"))),
        ),
        placeholder_keys=parse_switch(
            ini.get("promptcache_placeholder_keys"), "promptcache_placeholder_keys", True
        ),
        limits=limits,
        shared=shared,
        test_scope=words[0] == "test",
        vcr=words[1],
        vcr_drift=Drift(words[2]),
    )
