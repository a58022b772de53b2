"""What a replay miss tells the user: which request, the nearest recording, a diff, how to record it."""

from __future__ import annotations

import difflib
import json
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


def similarity(a: CanonicalRequest, b: CanonicalRequest) -> float:
    """Ratio of matching text (difflib) over the requests' text content, in [0, 1].

    ``autojunk`` is off: with it on, difflib ignores frequent characters in texts over 200 characters
    and gives erratic scores for exactly the long prompts LLM tests have.
    """
    ta, tb = text_content(a), text_content(b)
    matcher = difflib.SequenceMatcher(None, ta, tb, autojunk=False)
    if matcher.real_quick_ratio() == 0:
        return 0.0
    return matcher.ratio()


def nearest(
    request: CanonicalRequest, candidates: Mapping[str, CanonicalRequest]
) -> tuple[str, CanonicalRequest, float] | None:
    """The most similar recording of the same endpoint, preferring the same model."""
    best: tuple[tuple[bool, float], str, CanonicalRequest] | None = None
    for key, other in candidates.items():
        if (other.method, other.host, other.path) != (request.method, request.host, request.path):
            continue
        rank = (other.model == request.model, similarity(request, other))
        if best is None or rank > best[0]:
            best = (rank, key, other)
    if best is None:
        return None
    return best[1], best[2], best[0][1]


def pretty_request(request: CanonicalRequest) -> list[str]:
    data = request.model_dump(mode="json", exclude_none=True, exclude_defaults=True)
    return json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False).splitlines()


def record_command(target: str | None) -> str:
    if target is None:
        return "pytest --promptcache=record"
    return f"pytest --promptcache=record {shlex.quote(target)}"


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
