"""The report as the terminal shows it at the end of a session."""

from __future__ import annotations

from collections.abc import Iterator

from ..ledger import Bucket
from ..prices import usd
from .fleet import shared_lines
from .model import Report


def _usd_cell(value: float, bucket: Bucket) -> str:
    """A money cell that does not show a silent zero for calls nobody could price."""
    if value == 0 and bucket.unpriced_calls:
        return "unpriced"
    return usd(value)


def tokens_text(b: Bucket) -> str:
    cached = f" ({b.cached_input_tokens:,} cached)" if b.cached_input_tokens else ""
    return f"{b.input_tokens:,} in{cached}, {b.output_tokens:,} out"


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
    if t.calls_without_usage:
        no_usage = f"{t.calls_without_usage} calls carried no usage (e.g. streams without include_usage)"
        yield no_usage + ": not in the totals", None
    if report.unpriced_models:
        names = ", ".join(report.unpriced_models)
        yield (
            (
                f"unpriced models: {names} ({t.unpriced_calls} calls; tokens counted, no dollars): "
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
    if not verbose:
        yield "(-v shows the per-model table and the most expensive tests)", None
        return
    yield "", None
    width = max([len(m) for m in report.by_model] + [5])
    columns = (("calls", 5), ("input", 9), ("cached", 8), ("output", 8), ("spent", 9), ("saved", 9))
    yield f"{'model':<{width}}" + "".join(f"  {name:>{w}}" for name, w in columns), None
    for model, b in report.by_model.items():
        cells = (
            b.calls,
            f"{b.input_tokens:,}",
            f"{b.cached_input_tokens:,}",
            f"{b.output_tokens:,}",
            _usd_cell(b.spent_usd, b) if b.live else usd(b.spent_usd),
            _usd_cell(b.saved_usd, b) if b.replayed else usd(b.saved_usd),
        )
        yield (
            f"{model:<{width}}" + "".join(f"  {c:>{w}}" for c, (_, w) in zip(cells, columns, strict=True)),
            None,
        )
    top = sorted(report.by_test.items(), key=lambda kv: -kv[1].cost_usd)[:5]
    top = [(name, b) for name, b in top if b.cost_usd > 0]
    if top:
        yield "", None
        yield "most expensive tests (live + replayed cost):", None
        for name, b in top:
            yield f"  {usd(b.cost_usd):>9}  {name}", None
    for unsaved in report.not_saved:
        yield f"not saved: {unsaved.test}: {unsaved.url}: {unsaved.reason}", "yellow"
    for old in report.stale_recordings:
        when = f"{old.recorded_at:%Y-%m-%d}" if old.recorded_at else "?"
        yield f"stale: {old.key[:12]} recorded {when}, used by {old.test}", "yellow"
    for key in report.unused_recordings:
        yield f"unused: {key}", None
