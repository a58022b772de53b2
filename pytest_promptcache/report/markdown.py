"""The report as Markdown: a pull request comment, a GitHub Actions step summary."""

from __future__ import annotations

import os

from ..prices import usd
from ..words import plural
from .advice import advice_lines
from .compare import Comparison, amount_text, details, signed_usd
from .model import Report
from .terminal import cache_text, estimated_text, tokens_text


def cell(text: str) -> str:
    """Text in a table cell: a pipe or a line break in a model or test name would break the table."""
    return text.replace("|", "\\|").replace("\n", " ")


def comparison_markdown(c: Comparison, limit: int = 20) -> list[str]:
    pct = "" if c.delta_pct is None else f" ({c.delta_pct:+.1f}%)"
    lines = [
        f"#### Cost against `{cell(c.baseline)}`",
        "",
        f"{usd(c.before_usd)} → {usd(c.after_usd)} per run: **{signed_usd(c.delta_usd)}**{pct}.",
    ]
    if c.by_test:
        lines += ["", "| change | test | what changed |", "|---:|---|---|"]
        for change in c.by_test[:limit]:
            lines.append(f"| {amount_text(change)} | {cell(change.name)} | {details(change)} |")
    if c.by_model:
        lines += [
            "",
            "By model: " + ", ".join(f"{cell(m.name)} {signed_usd(m.delta_usd)}" for m in c.by_model) + ".",
        ]
    return lines


def markdown(report: Report) -> str:
    t = report.totals
    lines = [
        "### promptcache",
        "",
        f"Mode `{report.mode}`: **{plural(t.calls, 'LLM call')}**, {t.replayed} replayed, {t.live} live "
        f"({t.recorded} recorded), {t.misses} missed, {t.errors} failed.",
        f"Tokens: {tokens_text(t)}. Spent **{usd(t.spent_usd)}** on live calls; replay saved "
        f"**{usd(t.saved_usd)}**.",
        "",
        "| model | calls | replayed | live | input | cached | output | spent | saved | cache share "
        "| cache saved | estimated |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for model, b in report.by_model.items():
        share = f"{b.cache_share_text}" if b.input_tokens else "-"
        estimated = f"~{usd(b.estimated.cost_usd)} ({b.estimated.calls})" if b.estimated.calls else "-"
        lines.append(
            f"| {cell(model)} | {b.calls} | {b.replayed} | {b.live} | {b.input_tokens:,} | "
            f"{b.cached_input_tokens:,} | {b.output_tokens:,} | {usd(b.spent_usd)} | {usd(b.saved_usd)} | "
            f"{share} | {usd(b.cache_saved_usd)} | {estimated} |"
        )
    if report.unpriced_models:
        lines += ["", f"Unpriced models (tokens counted, no dollars): {', '.join(report.unpriced_models)}."]
    if t.estimated.calls:
        lines += ["", f"Estimated, not in the figures above: {estimated_text(t)}."]
    if t.free_calls:
        free = plural(t.free_calls, "call")
        lines += ["", f"{free} to free endpoints (count_tokens, moderations, GET): $0."]
    if t.calls_without_usage:
        count = t.calls_without_usage
        lines += ["", f"{plural(count, 'call')} carried no usage and no text to count: not in the totals."]
    if t.cached_input_tokens:
        lines += ["", f"Provider cache: {cache_text(t)}."]
    shared = report.shared
    if shared is not None:
        hits = ", ".join(f"{n} {tier}" for tier, n in shared.hits_by_tier.items())
        lines += ["", f"Shared tier `{shared.url}` (machine `{shared.machine}`): replayed from {hits}."]
        if shared.not_in_cassettes:
            missing = len(shared.not_in_cassettes)
            verb = "is" if missing == 1 else "are"
            served = plural(missing, "recording")
            lines.append(f"**{served} served from the shared tier {verb} not in cassettes/.**")
        lines += [f"> {notice}" for notice in shared.notices[:1]]
    if report.comparison is not None:
        lines += ["", *comparison_markdown(report.comparison)]
    if report.advice is not None and not report.advice.empty:
        lines += ["", "#### Prompt caching", "", "```", *advice_lines(report.advice, limit=5), "```"]
    if report.budget_exceeded and report.budget is not None:
        lines += [
            "",
            f"**Budget of {usd(report.budget.limit_usd)} reached**: "
            f"{plural(report.budget.blocked_calls, 'live call')} refused.",
        ]
    return "\n".join(lines) + "\n"


def append_github_summary(text: str) -> None:
    path = os.environ.get("GITHUB_STEP_SUMMARY")
    if path:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(text)
