"""What a replay miss tells the user: which request, the nearest recording, a diff, how to record it."""

from __future__ import annotations

import difflib
import json
import re
import shlex
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from .models import CanonicalRequest

# Fields whose strings are what a person wrote: similarity is measured on them, not on JSON framing,
# which every request of an endpoint shares and which would make any two requests look alike.
TEXT_FIELDS = frozenset(
    {"messages", "system", "input", "prompt", "contents", "instructions", "systemInstruction", "tools"}
)


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        # Key order differs between a live body and a stored (sorted) one; the text must not.
        for _, v in sorted(value.items()):
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


def text_content(request: CanonicalRequest) -> str:
    if isinstance(request.body, dict):
        parts = [s for k, v in sorted(request.body.items()) if k in TEXT_FIELDS for s in _strings(v)]
        if parts:
            return "\n".join(parts)
    if request.body_text is not None:
        return request.body_text
    return json.dumps(request.body, sort_keys=True, ensure_ascii=False)


_TOKEN = re.compile(r"\w+|[^\w\s]")


def tokens(request: CanonicalRequest) -> list[str]:
    return _TOKEN.findall(text_content(request))


def similarity(a: CanonicalRequest, b: CanonicalRequest) -> float:
    """How alike two requests' text content is, in [0, 1]: the share of matching word and punctuation
    tokens (difflib's ratio, 2·M / (|a| + |b|)) between their system prompts, messages, input and tools.

    Measured on what a person wrote, not the JSON framing every request of an endpoint shares (which
    would make any two requests look alike), on tokens rather than characters (a long prompt stays fast
    and one changed word costs one token), and with ``autojunk`` off (with it on, difflib ignores frequent
    items in sequences over 200 long and gives erratic scores for exactly the long prompts LLM tests have).
    """
    return _Scorer(tokens(a)).score(tokens(b))


class _Scorer:
    """One request compared with many: difflib caches the second sequence, so it is the fixed one."""

    def __init__(self, fixed: list[str]) -> None:
        self._matcher = difflib.SequenceMatcher(None, autojunk=False)
        self._matcher.set_seq2(fixed)
        self._empty = not fixed

    def upper_bound(self, other: list[str]) -> float:
        self._matcher.set_seq1(other)
        return self._matcher.quick_ratio()

    def score(self, other: list[str]) -> float:
        if self._empty and not other:
            return 1.0
        self._matcher.set_seq1(other)
        if self._matcher.real_quick_ratio() == 0:
            return 0.0
        return self._matcher.ratio()


def _same_endpoint(a: CanonicalRequest, b: CanonicalRequest) -> bool:
    return (a.method, a.host, a.path) == (b.method, b.host, b.path)


# A miss message needs one near recording, not the exact best of 100,000: after this many full
# comparisons (in order of their upper bounds) the best so far is shown.
NEAREST_SHORTLIST = 16


def _ranked(
    request: CanonicalRequest,
    candidates: Mapping[str, CanonicalRequest],
    floor: float = 0.0,
    limit: int | None = None,
) -> list[tuple[float, str, CanonicalRequest]]:
    """Candidates by similarity, best first; cheap upper bounds skip most full comparisons."""
    scorer = _Scorer(tokens(request))
    bounded = sorted(
        ((scorer.upper_bound(tokens(other)), key, other) for key, other in candidates.items()),
        key=lambda t: (-t[0], t[1]),
    )
    scored: list[tuple[float, str, CanonicalRequest]] = []
    best = floor
    for bound, key, other in bounded:
        if bound < best or (limit is not None and len(scored) >= limit):
            break
        score = scorer.score(tokens(other))
        scored.append((score, key, other))
        best = max(best, score)
    scored.sort(key=lambda t: (-t[0], t[1]))
    return scored


def nearest(
    request: CanonicalRequest, candidates: Mapping[str, CanonicalRequest]
) -> tuple[str, CanonicalRequest, float] | None:
    """The most similar recording of the same endpoint, preferring the same model (for miss diffs)."""
    same_endpoint = {k: c for k, c in candidates.items() if _same_endpoint(request, c)}
    same_model = {k: c for k, c in same_endpoint.items() if c.model == request.model}
    for pool in (same_model, same_endpoint):
        ranked = _ranked(request, pool, limit=NEAREST_SHORTLIST)
        if ranked:
            score, key, other = ranked[0]
            return key, other, score
    return None


def _stream_flag(request: CanonicalRequest) -> object:
    return request.body.get("stream") if isinstance(request.body, dict) else None


def most_similar(
    request: CanonicalRequest, candidates: Mapping[str, CanonicalRequest], threshold: float
) -> tuple[str, float] | None:
    """For similar matching: a recording of the same endpoint, model and stream flag (a stream served to
    a client that asked for a body would break it) at least ``threshold`` similar."""
    pool = {
        k: c
        for k, c in candidates.items()
        if _same_endpoint(request, c)
        and c.model == request.model
        and _stream_flag(c) == _stream_flag(request)
    }
    ranked = _ranked(request, pool, floor=threshold)
    if ranked and ranked[0][0] >= threshold:
        return ranked[0][1], ranked[0][0]
    return None


def pretty_request(request: CanonicalRequest) -> list[str]:
    data = request.model_dump(mode="json", exclude_none=True, exclude_defaults=True)
    return json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False).splitlines()


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
) -> str:
    lines = [
        "promptcache: no recording for this request (mode: replay)",
        f"  request:   {request.method} {url}",
        f"  model:     {request.model or '-'}",
        f"  key:       {key}",
        f"  cassettes: {directory}",
    ]
    if near is None:
        lines.append(f"  nearest:   none (no recording of {request.method} {request.host}{request.path})")
    else:
        near_key, near_request, score = near
        by = f", recorded by {recorded_by}" if recorded_by else ""
        lines.append(f"  nearest:   {near_key}.json (similarity {score:.2f}{by})")
        diff = list(
            difflib.unified_diff(
                pretty_request(near_request),
                pretty_request(request),
                fromfile=f"recorded {near_key[:12]}",
                tofile=f"this request {key[:12]}",
                lineterm="",
                n=2,
            )
        )
        if len(diff) > max_diff_lines:
            diff = [*diff[:max_diff_lines], f"... ({len(diff) - max_diff_lines} more diff lines)"]
        lines.append("")
        lines.extend(diff)
    lines += ["", "To record it, run with the API reachable and its key set:", f"  {record_command(target)}"]
    return "\n".join(lines)
