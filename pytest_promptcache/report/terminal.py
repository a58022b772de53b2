"""The report as the terminal shows it at the end of a session."""

from __future__ import annotations

from collections.abc import Iterator

from ..ledger import Bucket
from ..prices import usd
from ..tokens import ENCODING
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
        f"{est.calls} calls without usage, ~{est.input_tokens:,} in, ~{est.output_tokens:,} out, {money} "
        f"(tiktoken {ENCODING})"
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
        yield f"{t.free_calls} calls to free endpoints (count_tokens, moderations, GET): $0", None
    if t.calls_without_usage:
        yield f"{t.calls_without_usage} calls carried no usage and no text to count: not in the totals", None
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
    yield f"mode {report.mode}: {t.calls} LLM calls: {', '.join(parts)}", None
    yield f"tokens: {tokens_text(t)}", None
    spent_colour = "yellow" if t.spent_usd else "green"
    yield f"spent {usd(t.spent_usd)} on live calls, saved {usd(t.saved_usd)} by replay", spent_colour
    yield from summary_extras(t)
    if report.unpriced_models:
        names = ", ".join(report.unpriced_models)
        unpriced = t.unpriced_calls + t.estimated.unpriced_calls
        yield (
            (
                f"unpriced models: {names} ({unpriced} calls; tokens counted, no dollars): "
                "add them to ini promptcache_prices"
            ),
            "yellow",
        )
    if report.not_saved:
        yield f"{len(report.not_saved)} live calls were not saved (their body never completed)", "yellow"
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
                f"{len(report.stale_recordings)} stale recordings served (older than max-age): "
                "refresh them with --promptcache=rewrite, or promptcache_on_expiry = rerecord and "
                "--promptcache=record"
            ),
            "yellow",
        )
    if report.unused_recordings:
        yield (
            (
                f"{len(report.unused_recordings)} recordings unused by this run of the whole suite: "
                "--promptcache-prune deletes them"
            ),
            None,
        )
    if report.budget is not None and report.budget_exceeded:
        limit, blocked = usd(report.budget.limit_usd), report.budget.blocked_calls
        yield f"budget of {limit} reached: {blocked} live calls refused", "red"
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
    width = max([len(m) for m in report.by_model] + [5])
    columns = (
        ("calls", 5),
        ("input", 9),
        ("cached", 8),
        ("cache", 5),
        ("output", 8),
        ("estimated", 10),
        ("spent", 9),
        ("saved", 9),
    )
    yield f"{'model':<{width}}" + "".join(f"  {name:>{w}}" for name, w in columns), None
    for model, b in report.by_model.items():
        cells = (
            b.calls,
            f"{b.input_tokens:,}",
            f"{b.cached_input_tokens:,}",
            f"{b.cache_share_text}" if b.input_tokens else "-",
            f"{b.output_tokens:,}",
            _estimated_cell(b),
            _usd_cell(b.spent_usd, b) if b.live else usd(b.spent_usd),
            _usd_cell(b.saved_usd, b) if b.replayed else usd(b.saved_usd),
        )
        yield (
            f"{model:<{width}}" + "".join(f"  {c:>{w}}" for c, (_, w) in zip(cells, columns, strict=True)),
            None,
        )
    top = sorted(report.by_test.items(), key=lambda kv: -kv[1].total_cost_usd)[:5]
    top = [(name, b) for name, b in top if b.total_cost_usd > 0]
    if top:
        yield "", None
        yield "most expensive tests (live + replayed cost):", None
        for name, b in top:
            mark = "~" if b.estimated.calls else ""
            yield f"  {mark + usd(b.total_cost_usd):>10}  {name}", None
    if advice is not None and not advice.empty:
        yield "", None
        for text in advice_lines(advice, limit=3):
            yield text, None
    for unsaved in report.not_saved:
        yield f"not saved: {unsaved.test}: {unsaved.url}: {unsaved.reason}", "yellow"
    for old in report.stale_recordings:
        when = f"{old.recorded_at:%Y-%m-%d}" if old.recorded_at else "?"
        yield f"stale: {old.key[:12]} recorded {when}, used by {old.test}", "yellow"
    for key in report.unused_recordings:
        yield f"unused: {key}", None
