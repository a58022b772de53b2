"""How the command writes things for people: tables, counts, sizes, paths, times, requests and responses."""

from __future__ import annotations

import json
from collections.abc import Container, Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..models import CanonicalRequest, RecordedResponse, SSEEvent, TokenUsage
from ..prices import usd_column

# -- words, numbers, paths, times ------------------------------------------------------------------------


def human_size(size: int) -> str:
    if size < 1024:
        return f"{size} B"
    if size < 1024 * 1024:
        return f"{size / 1024:.1f} KiB"
    return f"{size / (1024 * 1024):.1f} MiB"


def display(path: Path) -> str:
    """A path as short as it can be while still working from the current directory."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def utc(moment: datetime) -> datetime:
    # A hand-written recorded_at without an offset is taken as UTC, which is what the plugin writes.
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def when(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def tokens_text(usage: TokenUsage) -> str:
    cached = f" ({usage.cached_input_tokens:,} cached)" if usage.cached_input_tokens else ""
    written = f" ({usage.cache_write_tokens:,} written to cache)" if usage.cache_write_tokens else ""
    return f"{usage.input_tokens:,} in{cached}{written}, {usage.output_tokens:,} out"


def print_table(
    header: Sequence[str], rows: Sequence[Sequence[str]], right: Container[int] = (), money: int | None = None
) -> None:
    """``right``: right-aligned columns; ``money``: a column of amounts, lined up on their decimal points."""
    if money is not None and rows:
        column = usd_column([row[money] for row in rows])
        rows = [(*row[:money], cell, *row[money + 1 :]) for row, cell in zip(rows, column, strict=True)]
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]
    for row in (header, *rows):
        cells = [
            c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        print("  ".join(cells).rstrip())


# -- requests and responses ------------------------------------------------------------------------------


def compact(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def pretty(value: Any) -> list[str]:
    # The response keeps the provider's key order, as the file does; the request is already sorted.
    return json.dumps(value, indent=2, ensure_ascii=False).splitlines()


def event_line(ev: SSEEvent) -> str:
    parts = [
        f"{name}={value}"
        for name, value in (("event", ev.event), ("id", ev.id), ("retry", ev.retry))
        if value is not None
    ]
    if ev.text is not None:
        # One line per event, whatever the data held: multi-line text data shows its newlines as \n.
        parts.append(ev.text.replace("\n", "\\n"))
    elif ev.data is not None:
        parts.append(compact(ev.data))
    return " ".join(parts)


def body_lines(response: RecordedResponse) -> list[str]:
    if response.events is not None:
        return [event_line(ev) for ev in response.events]
    if response.body is not None:
        return pretty(response.body)
    if response.text is not None:
        return response.text.splitlines()
    if response.base64 is not None:
        return [f"({len(response.base64)} characters of base64: a binary body)"]
    return ["(empty body)"]


def response_lines(response: RecordedResponse) -> list[str]:
    # Headers are left out: dates and request ids differ between any two recordings and hide the rest.
    return [f"status: {response.status}", *body_lines(response)]


def request_body_lines(request: CanonicalRequest) -> list[str]:
    if request.body is not None:
        return json.dumps(request.body, indent=2, sort_keys=True, ensure_ascii=False).splitlines()
    if request.body_text is not None:
        return request.body_text.splitlines()
    if request.body_sha256 is not None:
        return [f"(binary body, sha256 {request.body_sha256})"]
    return ["(no body)"]


def _text_pieces(data: Mapping[str, Any]) -> Iterator[tuple[int, str]]:
    """(choice index, text) of one stream chunk, for each wire format whose deltas carry text."""
    kind = data.get("type")
    delta = data.get("delta")
    if kind == "content_block_delta" and isinstance(delta, dict) and delta.get("type") == "text_delta":
        if isinstance(delta.get("text"), str):
            yield 0, delta["text"]
        return
    if kind == "response.output_text.delta" and isinstance(delta, str):
        yield 0, delta
        return
    for choice in data.get("choices") or ():
        if not isinstance(choice, dict):
            continue
        index = _index(choice)
        inner = choice.get("delta")
        if isinstance(inner, dict) and isinstance(inner.get("content"), str):
            yield index, inner["content"]
        elif isinstance(choice.get("text"), str):  # the legacy completions endpoint
            yield index, choice["text"]
    for candidate in data.get("candidates") or ():
        if not isinstance(candidate, dict):
            continue
        index = _index(candidate)
        content = candidate.get("content")
        for part in content.get("parts") or () if isinstance(content, dict) else ():
            # Gemini's thought summaries are not the answer.
            if isinstance(part, dict) and isinstance(part.get("text"), str) and not part.get("thought"):
                yield index, part["text"]


def _index(item: Mapping[str, Any]) -> int:
    value = item.get("index")
    return value if isinstance(value, int) else 0


def assembled_text(events: Iterable[SSEEvent]) -> dict[int, str] | None:
    """The text a client would have put together from the stream, per choice; None if none carried text."""
    texts: dict[int, list[str]] = {}
    for ev in events:
        if isinstance(ev.data, dict):
            for index, piece in _text_pieces(ev.data):
                texts.setdefault(index, []).append(piece)
    if not texts:
        return None
    return {index: "".join(pieces) for index, pieces in sorted(texts.items())}
