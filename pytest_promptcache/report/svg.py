"""Inline SVG charts for the HTML report: horizontal bars, drawn on the server, no script and no fonts
fetched. Every piece of text is escaped; every bar has a ``<title>`` a browser shows on hover."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from html import escape

BAR_HEIGHT = 18
GAP = 8
LABEL_WIDTH = 300
VALUE_WIDTH = 130
LABEL_CHARS = 44


@dataclass(frozen=True)
class Piece:
    """One part of a bar: its value, its CSS class (the colour), what hovering over it says."""

    value: float
    css: str
    title: str


@dataclass(frozen=True)
class Row:
    label: str
    pieces: Sequence[Piece]
    text: str  # the value as printed at the bar's end


def _label(text: str) -> str:
    return text if len(text) <= LABEL_CHARS else "..." + text[-(LABEL_CHARS - 3) :]


def bar_chart(
    rows: Sequence[Row],
    *,
    title: str,
    width: int = 900,
    scale: float | None = None,
    value_width: int = VALUE_WIDTH,
) -> str:
    """Bars, one per row, their pieces stacked left to right; ``scale`` is the value of a full bar
    (default: the largest row); ``value_width`` the room for the text after the longest bar."""
    top = scale if scale is not None else max((sum(p.value for p in r.pieces) for r in rows), default=0.0)
    span = width - LABEL_WIDTH - value_width
    height = max(len(rows), 1) * (BAR_HEIGHT + GAP) + GAP
    out = [
        f'<svg class="chart" role="img" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        f'xmlns="http://www.w3.org/2000/svg"><title>{escape(title)}</title>'
    ]
    for i, row in enumerate(rows):
        y = GAP + i * (BAR_HEIGHT + GAP)
        text_y = y + BAR_HEIGHT - 5
        out.append(
            f'<text class="label" x="{LABEL_WIDTH - 8}" y="{text_y}" text-anchor="end">'
            f"<title>{escape(row.label)}</title>{escape(_label(row.label))}</text>"
        )
        x = float(LABEL_WIDTH)
        for piece in row.pieces:
            w = span * piece.value / top if top > 0 else 0.0
            if w <= 0:
                continue
            out.append(
                f'<rect class="{escape(piece.css)}" x="{x:.1f}" y="{y}" width="{max(w, 1.0):.1f}" '
                f'height="{BAR_HEIGHT}"><title>{escape(piece.title)}</title></rect>'
            )
            x += w
        out.append(f'<text class="value" x="{x + 6:.1f}" y="{text_y}">{escape(row.text)}</text>')
    out.append("</svg>")
    return "".join(out)


def legend(items: Sequence[tuple[str, str]]) -> str:
    """Colour keys: (CSS class, what it stands for)."""
    keys = "".join(
        f'<span class="key"><svg width="12" height="12" aria-hidden="true"><rect class="{escape(css)}" '
        f'width="12" height="12"/></svg> {escape(text)}</span>'
        for css, text in items
    )
    return f'<div class="legend">{keys}</div>'


def table(header: Sequence[str], rows: Sequence[Sequence[str]], numeric: Callable[[int], bool]) -> str:
    """An HTML table; cells are escaped here, numeric columns right-aligned."""
    head = "".join(
        f'<th class="{"num" if numeric(i) else ""}">{escape(h)}</th>' for i, h in enumerate(header)
    )
    body = "".join(
        "<tr>"
        + "".join(f'<td class="{"num" if numeric(i) else ""}">{escape(c)}</td>' for i, c in enumerate(r))
        + "</tr>"
        for r in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
