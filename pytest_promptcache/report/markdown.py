"""The report as Markdown: a pull request comment, a GitHub Actions step summary."""

from __future__ import annotations

import os

from ..prices import usd
from .model import Report
from .terminal import cache_text, estimated_text, tokens_text


def cell(text: str) -> str:
    """Text in a table cell: a pipe or a line break in a model or test name would break the table."""
    return text.replace("|", "\\|").replace("\n", " ")


def markdown(report: Report) -> str:
    t = report.totals
    lines = [
        "### promptcache",
        "",
        f"Mode `{report.mode}`: **{t.calls}** LLM calls, {t.replayed} replayed, {t.live} live "
        f"({t.recorded} recorded), {t.misses} missed, {t.errors} failed.",
        f"Tokens: {tokens_text(t)}. Spent **{usd(t.spent_usd)}** on live calls; replay saved "
        f"**{usd(t.saved_usd)}**.",
        "",
        "| model | calls | replayed | live | input | cached | output | spent | saved | cache share "
        "| cache saved | estimated |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for model, b in report.by_model.items():
        share = f"{b.cache_share:.0%}" if b.input_tokens else "-"
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
        lines += ["", f"{t.free_calls} calls to free endpoints (count_tokens, moderations, GET): $0."]
    if t.calls_without_usage:
        lines += [
            "",
            f"{t.calls_without_usage} calls carried no usage and no text to count: not in the totals.",
        ]
    if t.cached_input_tokens:
        lines += ["", f"Provider cache: {cache_text(t)}."]
    if report.budget_exceeded and report.budget is not None:
        lines += [
            "",
            f"**Budget of {usd(report.budget.limit_usd)} reached**: {report.budget.blocked_calls} "
            "live calls refused.",
        ]
    return "\n".join(lines) + "\n"


def append_github_summary(text: str) -> None:
    path = os.environ.get("GITHUB_STEP_SUMMARY")
    if path:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(text)
