"""The demo suite: an LLM app's tests, replayed from ../cassettes with no network and no key."""

from __future__ import annotations

import anthropic
import openai
import support_bot


def test_triage_routes_billing_questions(oai: openai.OpenAI) -> None:
    assert support_bot.triage(oai, "I was charged twice on my billing statement") == "billing"


def test_triage_routes_crashes_to_bugs(oai: openai.OpenAI) -> None:
    assert support_bot.triage(oai, "The app shows a bug and crashes on start") == "bug"


def test_reply_streams_token_by_token(oai: openai.OpenAI) -> None:
    tokens = list(support_bot.stream_reply(oai, "Where is my parcel?"))
    assert len(tokens) > 3
    assert "parcel" in "".join(tokens)


def test_model_calls_the_order_lookup_tool(oai: openai.OpenAI) -> None:
    args = support_bot.find_order_call(oai, "Order 8812 never arrived")
    assert "8812" in args["echo"]


def test_similar_tickets_are_embedded(oai: openai.OpenAI) -> None:
    vectors = support_bot.similar_tickets(oai, ["refund please", "money back"])
    assert len(vectors) == 2
    assert all(len(v) == 8 for v in vectors)


def test_escalation_note_from_claude(claude: anthropic.Anthropic) -> None:
    note = support_bot.escalation_note(claude, "Customer threatens to cancel after third outage")
    assert "outage" in note


def test_escalation_note_streamed(claude: anthropic.Anthropic) -> None:
    assert "refund" in support_bot.escalation_note_streamed(claude, "refund refused twice")
