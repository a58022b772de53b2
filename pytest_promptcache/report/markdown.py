"""The report as Markdown: a pull request comment, a GitHub Actions step summary."""

from __future__ import annotations

import os

from ..prices import usd
from ..words import plural
from .model import Report
from .terminal import tokens_text


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
        "| model | calls | replayed | live | input | cached | output | spent | saved |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for model, b in report.by_model.items():
        lines.append(
            f"| {model} | {b.calls} | {b.replayed} | {b.live} | {b.input_tokens:,} | "
            f"{b.cached_input_tokens:,} | {b.output_tokens:,} | {usd(b.spent_usd)} | {usd(b.saved_usd)} |"
        )
    if report.unpriced_models:
        lines += ["", f"Unpriced models (tokens counted, no dollars): {', '.join(report.unpriced_models)}."]
    if t.calls_without_usage:
        count = t.calls_without_usage
        lines += ["", f"{plural(count, 'call')} carried no usage: not in the totals."]
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
