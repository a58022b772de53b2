"""The report as the terminal shows it at the end of a session."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

from ..prices import usd, usd_column
from ..sums import Bucket
from ..tokens import ENCODING
from ..words import plural, was
from .advice import advice_lines
from .compare import comparison_lines
from .fleet import shared_lines
from .model import Report


def _usd_cell(value: float, bucket: Bucket) -> str:
    """A money cell that does not show a silent zero for calls nobody could price."""
    if value == 0 and bucket.unpriced_calls:
        return "unpriced"
    return usd(value)


def _estimated_cell(b: Bucket) -> str:
    est = b.estimated
    if not est.calls:
        return "-"
    return "unpriced" if est.unpriced_calls == est.calls else "~" + usd(est.cost_usd)


def tokens_text(b: Bucket) -> str:
    cached = f" ({b.cached_input_tokens:,} cached)" if b.cached_input_tokens else ""
    return f"{b.input_tokens:,} in{cached}, {b.output_tokens:,} out"


def estimated_text(b: Bucket) -> str:
    """The estimated figures, marked so with a ``~`` and apart from what providers reported."""
    est = b.estimated
    money = "unpriced" if est.unpriced_calls == est.calls else f"~{usd(est.cost_usd)}"
    return (
        f"{plural(est.calls, 'call')} without usage, ~{est.input_tokens:,} in, "
        f"~{est.output_tokens:,} out, {money} (tiktoken {ENCODING})"
    )


def cache_text(b: Bucket) -> str:
    return (
        f"{b.cache_share_text} of input tokens ({b.cached_input_tokens:,}) from cache, saved "
        f"{usd(b.cache_saved_usd)} against uncached prices"
    )


def summary_extras(t: Bucket) -> Iterator[Line]:
    if t.estimated.calls:
        yield f"estimated, not in the figures above: {estimated_text(t)}", None
    if t.free_calls:
        yield f"{plural(t.free_calls, 'call')} to free endpoints (count_tokens, moderations, GET): $0", None
    if t.calls_without_usage:
        no_usage = plural(t.calls_without_usage, "call")
        yield f"{no_usage} carried no usage and no text to count: not in the totals", None
    if t.cached_input_tokens:
        yield f"provider cache: {cache_text(t)}", None


Line = tuple[str, str | None]  # text and an optional colour name


def terminal_lines(report: Report, verbose: bool) -> Iterator[Line]:
    t = report.totals
    parts = [f"{t.replayed} replayed"] if t.replayed else []
    if t.live:
        detail = [f"{n} {what}" for n, what in ((t.recorded, "recorded"), (t.errors, "failed")) if n]
        parts.append(f"{t.live} live" + (f" ({', '.join(detail)})" if detail else ""))
    if t.misses:
        parts.append(f"{t.misses} missed")
    if t.refused:
        parts.append(f"{t.refused} refused (connections no adapter handled)")
    yield f"mode {report.mode}: {plural(t.calls, 'LLM call')}: {', '.join(parts)}", None
    yield f"tokens: {tokens_text(t)}", None
    spent_colour = "yellow" if t.spent_usd else "green"
    yield f"spent {usd(t.spent_usd)} on live calls, saved {usd(t.saved_usd)} by replay", spent_colour
    yield from summary_extras(t)
    if report.unpriced_models:
        names = ", ".join(report.unpriced_models)
        unpriced = t.unpriced_calls + t.estimated.unpriced_calls
        yield (
            (
                f"unpriced models: {names} ({plural(unpriced, 'call')}; tokens counted, no dollars): "
                "add them to ini promptcache_prices"
            ),
            "yellow",
        )
    yield from _not_saved_lines(report)
    for sub in report.similar_substitutions:
        yield (
            (
                f"similar match: {sub.test}: served {sub.served_key[:12]} for {sub.requested_key[:12]} "
                f"(similarity {sub.similarity:.2f})"
            ),
            "yellow",
        )
    if report.stale_recordings:
        yield (
            (
                f"{plural(len(report.stale_recordings), 'stale recording')} served (older than max-age): "
                "refresh them with --promptcache=rewrite, or promptcache_on_expiry = rerecord and "
                "--promptcache=record"
            ),
            "yellow",
        )
    yield from _unused_lines(report)
    if report.budget is not None and report.budget_exceeded:
        limit, blocked = usd(report.budget.limit_usd), report.budget.blocked_calls
        yield f"budget of {limit} reached: {plural(blocked, 'live call')} refused", "red"
    if report.shared is not None:
        yield from shared_lines(report.shared, verbose)
    if report.comparison is not None:
        colour = "yellow" if report.comparison.delta_usd > 0 else None
        for text in comparison_lines(report.comparison):
            yield text, colour
    advice = report.advice
    if advice is not None and not advice.empty and not verbose:
        found = len(advice.findings) + len(advice.volatile)
        yield (
            (
                f"caching advice: {found} prompt prefixes, ~{usd(advice.saving_usd)} per run to save "
                "(-v or promptcache advise says where)"
            ),
            None,
        )
    if not verbose:
        yield "(-v shows the per-model table and the most expensive tests)", None
        return
    yield "", None
    header = ("model", "calls", "input", "cached", "cache", "output", "estimated", "spent", "saved")
    buckets = report.by_model.values()
    estimated = usd_column([_estimated_cell(b) for b in buckets])
    spent = usd_column([_usd_cell(b.spent_usd, b) if b.live else usd(b.spent_usd) for b in buckets])
    saved = usd_column([_usd_cell(b.saved_usd, b) if b.replayed else usd(b.saved_usd) for b in buckets])
    rows = [
        (
            model,
            str(b.calls),
            f"{b.input_tokens:,}",
            f"{b.cached_input_tokens:,}",
            f"{b.cache_share_text}" if b.input_tokens else "-",
            f"{b.output_tokens:,}",
            *money,
        )
        for (model, b), money in zip(
            report.by_model.items(), zip(estimated, spent, saved, strict=True), strict=True
        )
    ]
    # As wide as the widest cell (a small amount has many decimals), never narrower than the header.
    minimum = (5, 5, 9, 8, 5, 8, 10, 9, 9)
    widths = [max(w, *(len(row[i]) for row in rows)) for i, w in enumerate(minimum)]
    for row in (header, *rows):
        cells = [f"{row[0]:<{widths[0]}}", *(f"{c:>{w}}" for c, w in zip(row[1:], widths[1:], strict=True))]
        yield "  ".join(cells).rstrip(), None
    top = sorted(report.by_test.items(), key=lambda kv: -kv[1].total_cost_usd)[:5]
    top = [(name, b) for name, b in top if b.total_cost_usd > 0]
    if top:
        yield "", None
        yield "most expensive tests (live + replayed cost):", None
        amounts = usd_column([("~" if b.estimated.calls else "") + usd(b.total_cost_usd) for _, b in top])
        for amount, (name, _) in zip(amounts, top, strict=True):
            yield f"  {amount}  {name}", None
    if advice is not None and not advice.empty:
        yield "", None
        for text in advice_lines(advice, limit=3):
            yield text, None
    for unsaved in report.not_saved:
        yield f"not saved: {unsaved.test}: {unsaved.url}: {unsaved.reason}", "yellow"
    for old in report.stale_recordings:
        when = f"{old.recorded_at:%Y-%m-%d}" if old.recorded_at else "?"
        yield f"stale: {old.key[:12]} recorded {when}, used by {old.test}", "yellow"
    if report.pruned_recordings is None:
        for key in report.unused_recordings:
            yield f"unused: {key}", None


def _reasons(report: Report, limit: int = 3) -> Iterator[str]:
    """Why live calls were not saved, the most frequent first; the same reason once, with its count."""
    counts = Counter(unsaved.reason for unsaved in report.not_saved)
    for reason, count in counts.most_common(limit):
        text = reason if len(reason) <= 200 else reason[:200] + "..."
        yield f"  {plural(count, 'call')}: {text}"
    if len(counts) > limit:
        yield f"  and {plural(len(counts) - limit, 'other reason')} (-v lists every call)"


def _not_saved_lines(report: Report) -> Iterator[Line]:
    if report.nothing_saved:
        # A record run that passes with nothing recorded would only fail later, in CI, far from the cause.
        live = report.totals.live
        them, they = ("it", "it") if live == 1 else ("them", "they")
        yield (
            f"nothing was saved: this {report.mode} run made {plural(live, 'live call')} and recorded "
            f"none of {them}, so {they} will miss in replay; the run fails",
            "red",
        )
        for line in _reasons(report):
            yield line, "red"
        yield "Check that the API is reachable and its key is set, then record again.", "red"
    elif report.not_saved:
        count = len(report.not_saved)
        they = "it" if count == 1 else "they"
        yield f"{plural(count, 'live call')} {was(count)} not saved, so {they} will miss in replay:", "yellow"
        for line in _reasons(report):
            yield line, "yellow"


def _unused_lines(report: Report) -> Iterator[Line]:
    if report.pruned_recordings is not None:
        count = len(report.pruned_recordings)
        if not count:
            yield "--promptcache-prune: no unused recordings to delete", "green"
            return
        yield f"pruned {plural(count, 'unused recording')} (--promptcache-prune):", "green"
        for key in report.pruned_recordings:
            yield f"  deleted {key}.json", None
    elif report.unused_recordings:
        count = len(report.unused_recordings)
        yield (
            f"{plural(count, 'recording')} unused by this run of the whole suite: "
            f"--promptcache-prune deletes {'it' if count == 1 else 'them'}",
            None,
        )
