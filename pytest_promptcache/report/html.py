"""The report as one self-contained HTML page (``--promptcache-report-html``): totals, cost per model
and per test, live against replayed, the providers' cache share, the caching advisor and the cost
against a baseline. Inline CSS and SVG only: no script, nothing fetched, so it opens offline, from a CI
artifact or an email, and a strict Content-Security-Policy holds."""

from __future__ import annotations

from html import escape

from ..prices import usd
from ..sums import Bucket
from ..tokens import ENCODING
from ..words import plural
from .advice import PER_RUN
from .compare import amount_text, details, signed_usd
from .model import Report
from .svg import Piece, Row, bar_chart, legend, table

TOP_TESTS = 15
# Nothing but the page itself: no script runs, nothing is fetched.
CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"

STYLE = """
:root { color-scheme: light; --live: #d9822b; --replayed: #2b7bb9; --estimated: #9bb7cf;
  --cached: #3a9d5d; --uncached: #c9d3dc; --ink: #1d2733; --muted: #5b6b7b; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--ink); margin: 24px;
  max-width: 980px; }
h1 { font-size: 22px; margin: 0 0 4px; } h2 { font-size: 17px; margin: 28px 0 8px; }
.sub { color: var(--muted); margin: 0 0 16px; }
.cards { display: flex; flex-wrap: wrap; gap: 12px; }
.card { border: 1px solid #dde3e9; border-radius: 8px; padding: 10px 14px; min-width: 150px; }
.card .n { font-size: 20px; font-weight: 600; } .card .t { color: var(--muted); font-size: 12px; }
.est { color: var(--muted); font-style: italic; }
svg.chart text { font-size: 12px; fill: var(--ink); } svg.chart text.value { fill: var(--muted); }
rect.live { fill: var(--live); } rect.replayed { fill: var(--replayed); }
rect.estimated { fill: var(--estimated); } rect.cached { fill: var(--cached); }
rect.uncached { fill: var(--uncached); }
.legend { display: flex; gap: 16px; color: var(--muted); font-size: 12px; margin: 2px 0 4px; }
table { border-collapse: collapse; margin: 6px 0; }
th, td { padding: 4px 10px; border-bottom: 1px solid #e5e9ee; }
th { text-align: left; font-weight: 600; } .num { text-align: right; font-variant-numeric: tabular-nums; }
.finding { border-left: 3px solid var(--cached); padding: 4px 12px; margin: 10px 0; }
.finding.volatile { border-color: var(--live); } .finding p { margin: 2px 0; }
code { background: #f1f4f7; padding: 1px 4px; border-radius: 3px; }
"""


def _card(value: str, label: str, css: str = "") -> str:
    return (
        f'<div class="card {css}"><div class="n">{escape(value)}</div>'
        f'<div class="t">{escape(label)}</div></div>'
    )


def _cards(t: Bucket) -> str:
    cards = [
        _card(f"{t.calls:,}", f"LLM calls: {t.replayed:,} replayed, {t.live:,} live, {t.misses:,} missed"),
        _card(usd(t.spent_usd), "spent on live calls"),
        _card(usd(t.saved_usd), "saved by replay"),
        _card(f"{t.input_tokens:,} / {t.output_tokens:,}", "tokens in / out (reported)"),
        _card(f"{t.cache_share_text}", f"input from provider caches, saved {usd(t.cache_saved_usd)}"),
    ]
    est = t.estimated
    if est.calls:
        cards.append(
            _card(
                f"~{usd(est.cost_usd)}",
                f"estimated: {plural(est.calls, 'call')} without usage, ~{est.input_tokens:,} in / "
                f"~{est.output_tokens:,} out (tiktoken {ENCODING})",
                "est",
            )
        )
    if t.free_calls:
        cards.append(_card(f"{t.free_calls:,}", "calls to free endpoints, $0"))
    return '<div class="cards">' + "".join(cards) + "</div>"


def _cost_row(name: str, b: Bucket) -> Row:
    est = b.estimated
    pieces = [
        Piece(b.spent_usd, "live", f"{name}: {usd(b.spent_usd)} spent live"),
        Piece(b.saved_usd, "replayed", f"{name}: {usd(b.saved_usd)} replayed (its recorded cost)"),
        Piece(est.cost_usd, "estimated", f"{name}: ~{usd(est.cost_usd)} estimated ({est.calls} calls)"),
    ]
    text = ("~" if est.calls else "") + usd(b.total_cost_usd)
    return Row(name, pieces, text)


COST_LEGEND = legend(
    [("live", "spent live"), ("replayed", "replayed (recorded cost)"), ("estimated", "estimated")]
)


def _models(report: Report) -> str:
    costly = [(m, b) for m, b in report.by_model.items() if b.total_cost_usd > 0]
    rows = [_cost_row(m, b) for m, b in sorted(costly, key=lambda kv: -kv[1].total_cost_usd)]
    chart = bar_chart(rows, title="cost per model")
    cells = [
        (
            m,
            f"{b.calls:,}",
            f"{b.input_tokens:,}",
            f"{b.cached_input_tokens:,}",
            f"{b.output_tokens:,}",
            usd(b.spent_usd),
            usd(b.saved_usd),
            f"~{usd(b.estimated.cost_usd)}" if b.estimated.calls else "-",
        )
        for m, b in report.by_model.items()
    ]
    header = ("model", "calls", "input", "cached", "output", "spent", "saved", "estimated")
    return "<h2>Cost per model</h2>" + COST_LEGEND + chart + table(header, cells, lambda i: i > 0)


def _tests(report: Report) -> str:
    top = sorted(report.by_test.items(), key=lambda kv: -kv[1].total_cost_usd)[:TOP_TESTS]
    top = [(name, b) for name, b in top if b.total_cost_usd > 0]
    if not top:
        return ""
    more = len(report.by_test) - len(top)
    note = (
        f'<p class="sub">The {len(top)} most expensive of {len(report.by_test)} tests.</p>'
        if more > 0
        else ""
    )
    return (
        "<h2>Cost per test</h2>"
        + note
        + COST_LEGEND
        + bar_chart([_cost_row(n, b) for n, b in top], title="cost per test")
    )


def _live_replayed(report: Report) -> str:
    def row(name: str, b: Bucket) -> Row:
        missed = b.misses + b.refused
        pieces = [
            Piece(b.replayed, "replayed", f"{name}: {b.replayed} replayed"),
            Piece(b.live, "live", f"{name}: {b.live} live"),
            Piece(missed, "uncached", f"{name}: {missed} missed or refused"),
        ]
        return Row(name, pieces, f"{b.replayed:,} replayed, {b.live:,} live, {missed:,} missed")

    rows = [row("all calls", report.totals)] + [row(m, b) for m, b in report.by_model.items()]
    keys = legend([("replayed", "replayed"), ("live", "live"), ("uncached", "missed or refused")])
    chart = bar_chart(rows, title="live and replayed calls", value_width=240)
    return "<h2>Live and replayed</h2>" + keys + chart


def _cache(report: Report) -> str:
    rows = []
    for m, b in report.by_model.items():
        if not b.input_tokens:
            continue
        uncached = b.input_tokens - b.cached_input_tokens
        pieces = [
            Piece(b.cache_share, "cached", f"{m}: {b.cached_input_tokens:,} input tokens from cache"),
            Piece(1 - b.cache_share, "uncached", f"{m}: {uncached:,} input tokens uncached"),
        ]
        rows.append(Row(m, pieces, f"{b.cache_share_text} cached, saved {usd(b.cache_saved_usd)}"))
    if not rows:
        return ""
    keys = legend([("cached", "input served from the provider's cache"), ("uncached", "uncached input")])
    chart = bar_chart(rows, title="cache share per model", scale=1.0, value_width=240)
    return "<h2>Provider cache share</h2>" + keys + chart


def _advice(report: Report) -> str:
    advice = report.advice
    if advice is None:
        return ""
    parts = [f'<h2>Prompt caching advice</h2><p class="sub">Savings are {escape(PER_RUN)}.</p>']
    if advice.empty:
        parts.append("<p>No prompt prefix is sent twice at a cacheable length.</p>")
    for f in advice.findings:
        saving = "unpriced" if f.saving_usd is None else f"saves ~{usd(f.saving_usd)}"
        more = f" and {f.test_count - len(f.tests)} more" if f.test_count > len(f.tests) else ""
        parts.append(
            '<div class="finding">'
            f"<p><b>{escape(f.provider)} {escape(f.model)}</b>: {escape(' + '.join(f.prefix))}, "
            f"{f.tokens:,} tokens, sent by {f.uses} calls: <b>{escape(saving)}</b></p>"
            f"<p>begins <q>{escape(f.preview)}</q></p>"
            f"<p>breakpoint: <code>{escape(f.breakpoint)}</code></p>"
            f'<p class="sub">tests: {escape(", ".join(f.tests))}{more}</p>'
            "</div>"
        )
    for v in advice.volatile:
        saving = "unpriced" if v.saving_usd is None else f"~{usd(v.saving_usd)}"
        parts.append(
            '<div class="finding volatile">'
            f"<p><b>{escape(v.provider)} {escape(v.model)}</b>: {escape(v.part)} changes at token "
            f"~{v.offset_tokens:,} ({escape(' / '.join(v.examples))}); {v.cacheable_tokens:,} identical "
            f"tokens follow in {v.prompts} prompts. Moving the changing text after them saves "
            f"<b>{escape(saving)}</b>.</p>"
            "</div>"
        )
    if not advice.empty:
        parts.append(f"<p>Together: <b>~{escape(usd(advice.saving_usd))}</b> {escape(PER_RUN)}.</p>")
    return "".join(parts)


def _comparison(report: Report) -> str:
    c = report.comparison
    if c is None:
        return ""
    pct = "" if c.delta_pct is None else f" ({c.delta_pct:+.1f}%)"
    rows = [(amount_text(ch), ch.name, details(ch)) for ch in c.by_test[:TOP_TESTS]]
    return (
        f"<h2>Cost against {escape(c.baseline)}</h2>"
        f"<p>{escape(usd(c.before_usd))} → {escape(usd(c.after_usd))} per run: "
        f"<b>{escape(signed_usd(c.delta_usd) + pct)}</b></p>"
        + (table(("change", "test", "detail"), rows, lambda i: i == 0) if rows else "")
    )


def html(report: Report) -> str:
    t = report.totals
    body = [
        "<h1>promptcache: LLM calls, tokens and cost</h1>",
        f'<p class="sub">mode {escape(report.mode)}, {t.calls:,} calls, cost when made '
        f"<b>{escape(usd(t.total_cost_usd))}</b>{' (with estimates)' if t.estimated.calls else ''}</p>",
        _cards(t),
        _comparison(report),
        _models(report) if report.by_model else "",
        _tests(report),
        _live_replayed(report) if t.calls else "",
        _cache(report),
        _advice(report),
    ]
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>promptcache report</title><style>{STYLE}</style></head><body>"
        + "".join(body)
        + "</body></html>\n"
    )
