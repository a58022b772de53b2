"""The plugin's command-line options, ini options and hook specification."""

from __future__ import annotations

from typing import Any

import pytest

from ..settings import MODES_HELP

INI_STRINGS = {
    "promptcache_mode": "default mode: replay, record, rewrite or off",
    "promptcache_dir": "directory of recordings, relative to the rootdir",
    "promptcache_state_dir": "where processes coordinate (locks, pacing, budget); default: a temp directory",
    "promptcache_max_age": "recordings older than this (12h, 30d, 2w) are stale",
    "promptcache_on_expiry": "a stale recording: warn (serve it), fail, or rerecord (in record mode)",
    "promptcache_match": "exact (default), or similar:THRESHOLD: replay may serve the most similar recording",
    "promptcache_max_recording_size": "recording files larger than this are refused unread "
    "(bytes, or 512KiB, 64MiB, 1GiB; default 64MiB)",
    "promptcache_shared": "redis://[:PASSWORD@]HOST[:PORT][/DB] (or rediss://): recordings, single flight, "
    "pacing and the run's budget shared by every machine using it; env PROMPTCACHE_SHARED",
    "promptcache_shared_prefix": "namespace of the shared tier's Redis keys (default promptcache)",
    "promptcache_shared_ttl": "recordings in the shared tier expire this long after they were written "
    "(12h, 30d, 2w; default never)",
    "promptcache_shared_timeout": "seconds any one Redis operation may take before the session goes on "
    "without the shared tier (default 2)",
    "promptcache_machine": "this machine's name in reports (default the host name); env PROMPTCACHE_MACHINE",
    "promptcache_run_id": "machines with the same run id share one budget (e.g. the CI run number); env "
    "PROMPTCACHE_RUN_ID",
    "promptcache_scope": "session (default: one recording per request, for every test) or test (each test "
    "its own recordings, the N-th identical request answered by the N-th)",
    "promptcache_vcr": "@pytest.mark.vcr tests: cassettes (default: served from their vcrpy cassettes, "
    "then recordings), native (from recordings only) or off (left alone)",
    "promptcache_vcr_drift": "a request body that differs from the one its vcr cassette recorded: warn "
    "(default), fail, or ignore",
}
# Typed, so --help says what they take and a TOML number is not a deprecated non-string value.
INI_INTS = {
    "promptcache_memory_size": "recordings kept parsed in memory, and at most preloaded (default 4096)",
    "promptcache_record_rpm": "record/rewrite: at most this many requests per minute per host (all workers)",
    "promptcache_record_tpm": "record/rewrite: at most this many tokens per minute per host, across workers",
    "promptcache_record_retries": "record/rewrite: retry 429 and 5xx this many times (backoff, Retry-After)",
}
INI_FLOATS = {
    "promptcache_budget": "refuse live calls once they have cost this many USD (e.g. 2.50)",
    "promptcache_flight_timeout": "seconds a call waits for an identical call in flight before its test "
    "fails (default 300)",
    "promptcache_record_max_wait": "record/rewrite: a call that pacing would hold longer than this many "
    "seconds fails unsent (default 300)",
}
INI_SWITCHES = {
    "promptcache_guard": "in replay, refuse connections no adapter handled to LLM providers and to the "
    "hosts the recordings were made against (default true)",
    "promptcache_placeholder_keys": "in replay, set placeholder API keys for unset provider key variables "
    "so SDK clients start without a key (default true)",
}
INI_LINELISTS = {
    "promptcache_endpoints": "LLM endpoints to intercept: path suffixes ('/v1/rerank', ':generateContent') "
    "or "
    "'host[:port]/suffix'; replaces the defaults unless a line says 'defaults'; '-PATTERN' takes one out",
    "promptcache_ignore_fields": "JSON body fields left out of the key and the recording (JSON paths: "
    "'user', 'metadata.user_id', 'messages[*].id')",
    "promptcache_normalize": "text normalised before hashing: a built-in (uuid, iso-date, iso-datetime, "
    "unix-time, hex-id) or 'REGEX => REPLACEMENT'",
    "promptcache_host_aliases": "'HOST[:PORT] = NAME' lines (HOST may use *): requests to matching hosts "
    "are keyed as sent to NAME, so recordings match across hosts and ports ('* = any' ignores the host)",
    "promptcache_key_headers": "request headers that take part in the key, besides anthropic-version, "
    "anthropic-beta and openai-beta; -NAME takes a default out",
    "promptcache_secret_headers": "more header names never written to disk",
    "promptcache_secret_params": "more query parameter names never written to disk",
    "promptcache_secret_patterns": "more regexes whose matches are replaced by <redacted> in recordings",
    "promptcache_guard_hosts": "more hosts replay never connects to (patterns with *), besides the "
    "providers' API hosts",
    "promptcache_upstreams": "where the promptcache_proxy fixture forwards: 'NAME=URL' lines (e.g. "
    "'openai=http://127.0.0.1:8080/v1'); /NAME/... on the proxy goes to URL's host. Defaults: openai, "
    "anthropic and gemini at their public APIs",
    "promptcache_prices": "prices per million tokens for models genai-prices lacks or that you pay "
    "differently: 'MODEL input=0.4 output=1.6 [cache_read=0.1] [cache_write=0.5]'",
}


# Each type, what a value of it looks like: the end of the message for a value pytest could not read.
_EXAMPLES = {"int": "a whole number such as 500", "float": "a number such as 2.5", "bool": "true or false"}
INI_OPTIONS: tuple[tuple[str, dict[str, str]], ...] = (
    ("string", INI_STRINGS),
    ("linelist", INI_LINELISTS),
    ("int", INI_INTS),
    ("float", INI_FLOATS),
    ("bool", INI_SWITCHES),
)


def marker_lines() -> list[str]:
    return [
        "promptcache(mode=..., scope=..., normalize=[...], ignore_fields=[...]): this test's "
        f"pytest-promptcache options: mode ({MODES_HELP}) instead of the session's; scope (session or "
        "test: this test's own recordings, in order); normalize (uuid, iso-date, "
        "iso-datetime, unix-time, hex-id, 'REGEX => REPLACEMENT') and ignore_fields (JSON paths) add to "
        "the ini's key rules",
    ]


def read_ini(config: pytest.Config) -> dict[str, Any]:
    """Every ini option's value; None for a typed one that is not set. A value pytest cannot convert
    to its type is a one-line usage error naming the option, not a traceback."""
    values: dict[str, Any] = {}
    for kind, options in INI_OPTIONS:
        for name in options:
            try:
                values[name] = config.getini(name)
            except (pytest.UsageError, ValueError, TypeError) as exc:
                what = _EXAMPLES.get(kind, kind)
                raise pytest.UsageError(f"pytest-promptcache: ini {name}: {exc}; write {what}") from None
    return values


def add_options(parser: pytest.Parser) -> None:
    group = parser.getgroup("promptcache", "record and replay LLM API calls (pytest-promptcache)")
    group.addoption(
        "--promptcache",
        dest="promptcache_mode",
        metavar="MODE",
        default=None,
        help=f"replay (default): serve recordings, fail on a missing one; record: go live for missing "
        f"recordings and save them; rewrite: go live for every call and overwrite; off: no cassettes. "
        f"One of {MODES_HELP}. Env PROMPTCACHE_MODE, ini promptcache_mode.",
    )
    group.addoption(
        "--promptcache-dir",
        dest="promptcache_dir",
        metavar="DIR",
        default=None,
        help="directory of recordings, relative to the rootdir (default: cassettes). Ini promptcache_dir.",
    )
    group.addoption(
        "--promptcache-report",
        dest="promptcache_report",
        metavar="PATH",
        default=None,
        help="write the session's calls, tokens and dollars as JSON to PATH",
    )
    group.addoption(
        "--promptcache-report-md",
        dest="promptcache_report_md",
        metavar="PATH",
        default=None,
        help="write the session report as Markdown to PATH (also appended to $GITHUB_STEP_SUMMARY when set)",
    )
    group.addoption(
        "--promptcache-report-html",
        dest="promptcache_report_html",
        metavar="PATH",
        default=None,
        help="write the session report as one self-contained HTML page (inline SVG charts, no network)",
    )
    group.addoption(
        "--promptcache-compare",
        dest="promptcache_compare",
        metavar="BASELINE.json",
        default=None,
        help="show the change of the suite's LLM cost per test and per model against a report of another "
        "run (--promptcache-report of main, say), in the terminal and every report",
    )
    group.addoption(
        "--promptcache-budget",
        dest="promptcache_budget",
        metavar="USD",
        default=None,
        help="refuse live calls once live calls in this session have cost USD; the session then fails. "
        "Ini promptcache_budget.",
    )
    group.addoption(
        "--promptcache-max-age",
        dest="promptcache_max_age",
        metavar="AGE",
        default=None,
        help="recordings older than AGE (12h, 30d, 2w) are stale; see ini promptcache_on_expiry",
    )
    group.addoption(
        "--promptcache-match",
        dest="promptcache_match",
        metavar="RULE",
        default=None,
        help="exact (default), or similar:THRESHOLD: in replay, serve the most similar recording of the "
        "same endpoint and model when there is no exact one (every substitution is reported)",
    )
    group.addoption(
        "--promptcache-prune",
        dest="promptcache_prune",
        action="store_true",
        default=False,
        help="after a run of the whole suite, delete the recordings no test used",
    )
    defaults: dict[str, Any] = {"string": "", "linelist": []}
    for kind, options in INI_OPTIONS:
        for name, help_text in options.items():
            # None when a typed one is unset: the settings tell "not set" from 0 (a budget of 0 is one).
            parser.addini(name, help_text, type=kind, default=defaults.get(kind))  # type: ignore[arg-type]


class HookSpecs:
    @pytest.hookspec
    def pytest_promptcache_canonical_request(self, request: dict[str, Any], item: pytest.Item) -> None:
        """Change the canonical request of an LLM call before it is hashed, in place.

        ``request`` has ``method``, ``host``, ``path``, ``query`` (list of [name, value]), ``headers``
        (the key headers), ``body`` (the JSON body, ignored fields removed, normalised) or ``body_text``.
        What it holds afterwards is hashed to the key and stored in the recording, so a miss diff shows it.
        ``item`` is the running test. Called for every intercepted request of the test.
        """
