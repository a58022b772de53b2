"""What a replay miss tells the user: which request, the nearest recording, a diff, how to record it;
and, opt-in, the most similar recording to serve instead.

Both searches rank the recordings of the request's endpoint by the index's signatures and read only a
handful (``NEAREST_READS``, ``SIMILAR_READS``), scoring those exactly (``similarity.score``): a miss
costs the same with 10 recordings or 100,000.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

from .jsontext import escape_surrogates
from .keys import key_of
from .models import CanonicalRequest, RecordedResponse
from .similarity import score, signature, similarity, tokens, upper_bound
from .store.cassettes import CassetteStore
from .store.index import group_of
from .store.packed import GroupKey
from .streams import Replay, build_replay
from .textdiff import unified

__all__ = [
    "describe_miss",
    "drift_message",
    "elsewhere",
    "miss_message",
    "miss_response",
    "most_similar",
    "nearest",
    "pretty_request",
    "record_command",
    "similarity",
]

# A miss message needs one near recording, not the exact best of 100,000: this many are read and scored.
NEAREST_READS = 8
# Serving a substitute deserves a wider look.
SIMILAR_READS = 16
# Candidates looked at, read or not (one whose length alone rules it out is passed over unread).
MAX_LOOKED_AT = 4096
# Other hosts checked for this very request (staging, production, a test server or two): each costs
# one recording's head read.
MAX_OTHER_HOSTS = 16


def _search(
    request: CanonicalRequest,
    store: CassetteStore,
    accept: Callable[[GroupKey], bool],
    reads: int,
    floor: float = 0.0,
) -> tuple[float, str, CanonicalRequest] | None:
    """The best of the first ``reads`` usable candidates, nearest signature first, scoring at least
    ``floor``."""
    toks = tokens(request)
    best: tuple[float, str, CanonicalRequest] | None = None
    seen: set[str] = set()
    for looked, candidate in enumerate(store.index.ranked(signature(toks), accept)):
        if looked >= MAX_LOOKED_AT or reads <= 0:
            break
        if candidate.key in seen:
            continue
        seen.add(candidate.key)
        bar = max(floor, best[0]) if best is not None else floor
        if upper_bound(len(toks), candidate.tokens) < bar:
            continue
        reads -= 1
        other = store.request_of(candidate.key)
        if other is None:
            continue  # changed since it was indexed, and now unusable
        found = score(toks, tokens(other))
        if found >= bar and (best is None or found > best[0]):
            best = (found, candidate.key, other)
    return best


def nearest(request: CanonicalRequest, store: CassetteStore) -> tuple[str, CanonicalRequest, float] | None:
    """The most similar recording of the same endpoint, preferring the same model (for miss diffs)."""
    endpoint = (request.method, request.host, request.path)

    def same_model(group: GroupKey) -> bool:
        return group[:3] == endpoint and group[3] == request.model

    def same_endpoint(group: GroupKey) -> bool:
        return group[:3] == endpoint

    for accept in (same_model, same_endpoint):
        found = _search(request, store, accept, NEAREST_READS)
        if found is not None:
            found_score, key, other = found
            return key, other, found_score
    return None


def most_similar(
    request: CanonicalRequest, store: CassetteStore, threshold: float
) -> tuple[str, float] | None:
    """For similar matching: a recording of the same endpoint, model and stream flag (a stream served to
    a client that asked for a body would break it) at least ``threshold`` similar."""
    group = group_of(request)
    found = _search(request, store, lambda g: g == group, SIMILAR_READS, floor=threshold)
    if found is None:
        return None
    return found[1], found[0]


def elsewhere(request: CanonicalRequest, store: CassetteStore) -> tuple[str, str | None] | None:
    """Another host with recordings of this endpoint: (host, the key of this very request there), an
    exact match first; (host, None) when only the endpoint is recorded there; None when no other is."""

    def other_host(group: GroupKey) -> bool:
        return group[0] == request.method and group[2] == request.path and group[1] != request.host

    hosts = sorted(store.index.hosts(other_host))
    for host in hosts[:MAX_OTHER_HOSTS]:
        key = key_of(request.model_copy(update={"host": host}))
        if store.request_of(key) is not None:
            return host, key
    return (hosts[0], None) if hosts else None


def _alias(netloc: str, recorded: str) -> str:
    """An alias line that keys this request's host as the recorded one: ``HOST:*`` when only the ports
    differ (a test server on a random port), else this exact host."""
    name, colon, _ = netloc.rpartition(":")
    other = recorded.rpartition(":")[0]
    if colon and name and name == other and "[" not in name:
        return f"{name}:* = {recorded}"
    return f"{netloc} = {recorded}"


def _elsewhere_lines(url: str, request: CanonicalRequest, found: tuple[str, str | None]) -> list[str]:
    host, key = found
    if key is not None:
        said = f"this very request is recorded for host {host}: {key}.json"
    else:
        said = f"{request.method} {request.path} has recordings for host {host}, none for this one"
    return [
        f"  elsewhere: {said}",
        "             if both hosts are one service, alias them in the ini and those recordings replay here:",
        "               promptcache_host_aliases =",
        f"                   {_alias(urlsplit(url).netloc, host)}",
    ]


def pretty_request(request: CanonicalRequest) -> list[str]:
    data = request.model_dump(mode="json", exclude_none=True, exclude_defaults=True)
    # A lone surrogate (half an emoji) would stop the terminal printing the message: shown escaped.
    text = escape_surrogates(json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False))
    return text.splitlines()


def record_command(target: str | None, mode: str = "record") -> str:
    if target is None:
        return f"pytest --promptcache={mode}"
    return f"pytest --promptcache={mode} {shlex.quote(target)}"


def miss_message(
    *,
    request: CanonicalRequest,
    key: str,
    url: str,
    directory: Path,
    target: str | None,
    near: tuple[str, CanonicalRequest, float] | None,
    recorded_by: str | None = None,
    max_diff_lines: int = 80,
    other_host: tuple[str, str | None] | None = None,
    also: list[str] | None = None,
) -> str:
    """``other_host``: what ``elsewhere`` found; shown when it is this very request, or when this host
    has no recording of the endpoint at all. ``also``: lines about where else the request was looked for
    (a vcr cassette)."""
    lines = [
        "promptcache: no recording for this request (mode: replay)",
        f"  request:   {request.method} {url}",
        f"  model:     {request.model or '-'}",
        f"  key:       {key}",
        f"  cassettes: {directory}",
    ]
    if other_host is not None and (other_host[1] is not None or near is None):
        lines.extend(_elsewhere_lines(url, request, other_host))
    if request.scope is not None:
        occurrence = request.scope.index + 1
        lines.insert(4, f"  scope:     {request.scope.name}, the request's occurrence {occurrence} there")
    if near is None:
        lines.append(f"  nearest:   none (no recording of {request.method} {request.host}{request.path})")
    else:
        near_key, near_request, near_score = near
        by = f", recorded by {recorded_by}" if recorded_by else ""
        lines.append(f"  nearest:   {near_key}.json (similarity {near_score:.2f}{by})")
        diff = unified(
            pretty_request(near_request),
            pretty_request(request),
            f"recorded {near_key[:12]}",
            f"this request {key[:12]}",
            max_lines=max_diff_lines,
        )
        lines.append("")
        lines.extend(diff)
    if also:
        lines += ["", *also]
    lines += ["", "To record it, run with the API reachable and its key set:", f"  {record_command(target)}"]
    return "\n".join(lines)


def describe_miss(
    request: CanonicalRequest,
    store: CassetteStore,
    scrub: Callable[[str], str],
    *,
    key: str,
    url: str,
    target: str | None,
    also: list[str],
) -> str:
    """The miss message for a request, with what the store knows: the nearest recording (and the test
    that made it) and the same request recorded for another host."""
    near = nearest(request, store)
    recorded_by = store.recorded_by(near[0]) if near is not None else None
    # Made by an older version, a recording's test id may still hold a secret.
    recorded_by = scrub(recorded_by) if recorded_by else None
    return miss_message(
        request=request,
        key=key,
        url=url,
        directory=store.directory,
        target=target,
        near=near,
        recorded_by=recorded_by,
        other_host=elsewhere(request, store),
        also=also,
    )


def drift_message(
    *,
    recorded: CanonicalRequest,
    request: CanonicalRequest,
    url: str,
    where: str,
    failing: bool,
    target: str | None,
    max_diff_lines: int = 80,
) -> str:
    """A vcr interaction served although the body the code sends now differs from the recorded one: vcr
    matched on method and URI, so nobody saw the prompt change."""
    verdict = "so the test fails" if failing else "served anyway"
    lines = [
        f"promptcache: the request body differs from the one the cassette recorded ({verdict})",
        f"  request:   {request.method} {url}",
        f"  model:     {request.model or '-'}",
        f"  cassette:  {where}",
        "",
        *unified(
            pretty_request(recorded),
            pretty_request(request),
            "recorded",
            "this request",
            max_lines=max_diff_lines,
        ),
        "",
        "To record the request as it is now (saved as this test's own recording, served before the",
        f"cassette from then on): {record_command(target, mode='rewrite')}",
    ]
    if not failing:
        lines.append("To fail tests whose bodies drifted: promptcache_vcr_drift = fail (ini).")
    return "\n".join(lines)


def miss_response(message: str) -> Replay:
    """How a miss answers the client: a 404 with ``x-should-retry: false``, which SDKs neither retry nor
    hide. Raising in the transport would be retried with backoff and rewrapped by the SDKs (openai turns
    it into APIConnectionError after ~2.5 s); this reaches the caller at once as NotFoundError carrying
    the message, and the plugin fails the test even if that is caught."""
    return build_replay(
        RecordedResponse(
            status=404,
            headers={
                "content-type": "application/json",
                "x-should-retry": "false",
                "x-promptcache": "miss",
                # botocore names its ClientError after this header.
                "x-amzn-errortype": "PromptcacheMiss",
            },
            # The OpenAI and Anthropic SDKs find "message" in "error" and put it in their error;
            # botocore finds it at the top.
            body={
                "type": "error",
                "error": {"type": "promptcache_miss", "code": "promptcache_miss", "message": message},
                "message": message,
            },
        )
    )
