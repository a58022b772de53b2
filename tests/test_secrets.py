"""Secrets wherever they hide, end to end: credentials sent in query parameters and headers, secrets a
stream delivers in pieces, and secrets in test ids. Each must stay out of recordings, reports and what
the plugin prints, and a recording's key must not depend on a secret's value."""

from __future__ import annotations

import hashlib
import json
import re

import pytest
from conftest import FAKE_SECRETS, Suite

# A credential under a neutral variable name and of no known key shape: only learning that the client
# sent it can hide it. Each test of the inner suite derives its own, so one cannot hide another's.
CREDENTIAL = "Zq7-live-credential-0a1b2c3d"
OTHER_CREDENTIAL = "Wx4-other-credential-9f8e7d6c"

SEEN_CONFTEST = """
import json
import os
from pathlib import Path

import pytest


@pytest.fixture
def seen(request):
    items = []
    yield items
    with Path(os.environ["SEEN_FILE"]).open("a", encoding="utf-8") as fh:
        fh.write(json.dumps({"test": request.node.nodeid, "seen": items}) + "\\n")
"""

CREDENTIALS_SUITE = """
import hashlib
import os

import httpx

BASE = os.environ["LLM_URL"]
CRED = os.environ["CREDENTIAL"]
GEMINI = f"{BASE}/v1beta/models/gemini-2.5-flash"


def chat(text, **kw):
    body = {"model": "gpt-4.1-mini", "messages": [{"role": "user", "content": text}]}
    r = httpx.post(f"{BASE}/v1/chat/completions", json=body, **kw)
    r.raise_for_status()
    assert r.json()["choices"][0]["message"]["content"].startswith("echo: my key is ")


def test_gemini_query_key():
    cred = "gq-" + CRED
    r = httpx.post(
        f"{GEMINI}:generateContent",
        params={"key": cred},
        json={"contents": [{"parts": [{"text": f"my key is {cred}"}]}]},
    )
    r.raise_for_status()
    assert r.json()["candidates"][0]["content"]["parts"][0]["text"].startswith("echo: my key is ")


def test_gemini_query_key_stream():
    cred = "gs-" + CRED
    with httpx.stream(
        "POST",
        f"{GEMINI}:streamGenerateContent",
        params={"alt": "sse", "key": cred},
        json={"contents": [{"parts": [{"text": f"my key is {cred}"}]}]},
    ) as r:
        r.raise_for_status()
        assert [line for line in r.iter_lines() if line.startswith("data: ")]


def test_azure_apim_subscription_key_param():
    cred = "sp-" + CRED
    chat(f"my key is {cred} in a parameter", params={"subscription-key": cred})


def test_azure_apim_subscription_key_header():
    cred = "sh-" + CRED
    chat(f"my key is {cred} in a header", headers={"ocp-apim-subscription-key": cred})


def test_aws_session_token_header():
    cred = "st-" + CRED
    chat(f"my key is {cred} as a token", headers={"x-amz-security-token": cred})


def test_aws_sigv4_authorization():
    digest = hashlib.sha256(CRED.encode()).hexdigest()
    key_id, signature = "AKIA" + digest[:16].upper(), digest
    authorization = (
        f"AWS4-HMAC-SHA256 Credential={key_id}/20260101/us-east-1/bedrock/aws4_request, "
        f"SignedHeaders=host;x-amz-date, Signature={signature}"
    )
    chat(f"my key is {key_id} signed {signature}", headers={"authorization": authorization})
"""


def sigv4_parts(credential: str) -> tuple[str, str]:
    digest = hashlib.sha256(credential.encode()).hexdigest()
    return "AKIA" + digest[:16].upper(), digest


def test_credentials_sent_in_query_and_headers_never_reach_a_recording_nor_its_key(
    suite: Suite, monkeypatch: pytest.MonkeyPatch
) -> None:
    suite.pytester.makepyfile(test_sent_credentials=CREDENTIALS_SUITE)
    monkeypatch.setenv("CREDENTIAL", CREDENTIAL)
    suite.run("--promptcache=record").assert_outcomes(passed=6)
    text = suite.cassette_text()
    assert CREDENTIAL not in text
    for part in sigv4_parts(CREDENTIAL):
        assert part not in text
    urls = [data["meta"]["url"] for data in suite.recordings().values()]
    assert sum(bool(re.search(r"[?&]key=<redacted>", url)) for url in urls) == 2
    assert sum("?subscription-key=<redacted>" in url for url in urls) == 1
    assert all(data["request"]["query"] in ([], [["alt", "sse"]]) for data in suite.recordings().values())
    recorded = set(suite.recordings())
    assert len(recorded) == 6

    # Another machine, another key: the same recordings serve it, offline.
    suite.server.stop()
    monkeypatch.setenv("CREDENTIAL", OTHER_CREDENTIAL)
    suite.run().assert_outcomes(passed=6)
    assert set(suite.recordings()) == recorded


STREAMS_SUITE = """
import json
import os

import anthropic
import httpx
import openai

BASE = os.environ["LLM_URL"]
PROMPT = os.environ["PROMPT"]
GPT = "gpt-4.1-mini"
CLAUDE = "claude-sonnet-4-6"
GEMINI = f"{BASE}/v1beta/models/gemini-2.5-flash:streamGenerateContent"
GEMINI_HEADERS = {"x-goog-api-key": os.environ["GEMINI_API_KEY"]}
TOOL = {"type": "function", "function": {"name": "echo", "parameters": {"type": "object"}}}
CLAUDE_TOOL = {"name": "echo", "input_schema": {"type": "object"}}


def oai():
    return openai.OpenAI(base_url=BASE + "/v1", max_retries=0)


def claude():
    return anthropic.Anthropic(base_url=BASE, max_retries=0)


def test_chat(seen):
    chunks = list(oai().chat.completions.create(
        model=GPT, messages=[{"role": "user", "content": PROMPT}], stream=True
    ))
    seen += [len(chunks), "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)]


def test_chat_tool_arguments(seen):
    chunks = list(oai().chat.completions.create(
        model=GPT, messages=[{"role": "user", "content": PROMPT}], tools=[TOOL], stream=True
    ))
    calls = [c.choices[0].delta.tool_calls for c in chunks if c.choices and c.choices[0].delta.tool_calls]
    seen += [len(chunks), "".join(call[0].function.arguments or "" for call in calls)]


def test_responses(seen):
    events = list(oai().responses.create(model=GPT, input=PROMPT, stream=True))
    seen += [len(events), "".join(e.delta for e in events if e.type == "response.output_text.delta")]


def test_anthropic(seen):
    events = list(claude().messages.create(
        model=CLAUDE, max_tokens=64, messages=[{"role": "user", "content": PROMPT}], stream=True
    ))
    deltas = [e.delta for e in events if e.type == "content_block_delta"]
    seen += [len(events), "".join(d.text for d in deltas if d.type == "text_delta")]


def test_anthropic_tool_input(seen):
    events = list(claude().messages.create(
        model=CLAUDE,
        max_tokens=64,
        tools=[CLAUDE_TOOL],
        messages=[{"role": "user", "content": PROMPT}],
        stream=True,
    ))
    deltas = [e.delta for e in events if e.type == "content_block_delta"]
    seen += [len(events), "".join(d.partial_json for d in deltas if d.type == "input_json_delta")]


def gemini_text(chunk):
    return chunk["candidates"][0]["content"]["parts"][0]["text"]


def test_gemini_sse(seen):
    body = {"contents": [{"parts": [{"text": PROMPT}]}]}
    with httpx.stream("POST", GEMINI, params={"alt": "sse"}, headers=GEMINI_HEADERS, json=body) as r:
        chunks = [json.loads(line[6:]) for line in r.iter_lines() if line.startswith("data: ")]
    seen += [len(chunks), "".join(gemini_text(c) for c in chunks)]


def test_gemini_json_array(seen):
    body = {"contents": [{"parts": [{"text": PROMPT}]}]}
    chunks = httpx.post(GEMINI, headers=GEMINI_HEADERS, json=body).json()
    seen += [len(chunks), "".join(gemini_text(c) for c in chunks)]
"""

# Of no known shape and in no variable: only learning that the client sent it can find it.
SHAPED = "sk-ant-admin01-Q7w8E9r0T1y2U3i4O5p6"  # a key shape no environment variable holds


def test_a_secret_streamed_in_pieces_is_redacted_in_the_text_the_client_assembles(
    suite: Suite, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = FAKE_SECRETS["OPENAI_API_KEY"]
    monkeypatch.setenv("PROMPT", f"keys {key} and {SHAPED} end")
    suite.server.delta_chars = 4  # every secret arrives cut over several events
    suite.pytester.makeconftest(SEEN_CONFTEST)
    suite.pytester.makepyfile(test_split_streams=STREAMS_SUITE)
    suite.run("--promptcache=record").assert_outcomes(passed=7)
    live = suite.seen()
    assert all(key in text and SHAPED in text for _, text in live.values())
    assert key not in suite.cassette_text()

    suite.server.stop()
    suite.run().assert_outcomes(passed=7)
    replayed = suite.seen()
    for test, (count, text) in live.items():
        hidden = text.replace(key, "<redacted:OPENAI_API_KEY>").replace(SHAPED, "<redacted>")
        # The rest of the stream is intact and no event was added or dropped.
        assert replayed[test] == [count, hidden], test


IDS_SUITE = """
import os

import httpx
import openai
import pytest

BASE = os.environ["LLM_URL"]
PROMPT = os.environ.get("PROMPT", "Hello")


@pytest.mark.parametrize("key", [os.environ["OPENAI_API_KEY"]])
def test_env_key(key):
    client = openai.OpenAI(base_url=BASE + "/v1", api_key=key, max_retries=0)
    client.chat.completions.create(model="gpt-4.1-mini", messages=[{"role": "user", "content": PROMPT}])


@pytest.mark.parametrize("cred", [os.environ["CREDENTIAL"]])
def test_sent_credential(cred):
    body = {"model": "gpt-4.1-mini", "messages": [{"role": "user", "content": PROMPT + " too"}]}
    httpx.post(f"{BASE}/v1/chat/completions", headers={"api-key": cred}, json=body).raise_for_status()
"""

# pytest's own header of a failing test names it: that is pytest's business, not ours.
PYTEST_HEADER = re.compile(r"^_{3,} .* _{3,}$")


def section(lines: list[str], title: str) -> str:
    start = next(i for i, line in enumerate(lines) if re.fullmatch(rf"-+ {title} -+", line))
    return "\n".join(lines[start:])


def test_secrets_in_test_ids_reach_no_recording_report_summary_or_miss_message(
    suite: Suite, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = FAKE_SECRETS["OPENAI_API_KEY"]
    monkeypatch.setenv("CREDENTIAL", CREDENTIAL)
    suite.pytester.makepyfile(test_secret_ids=IDS_SUITE)
    recorded = suite.run(
        "--promptcache=record", "-v", "--promptcache-report=report.json", "--promptcache-report-md=report.md"
    )
    recorded.assert_outcomes(passed=2)
    summary = section(recorded.outlines, "promptcache")
    assert "most expensive tests" in summary
    report = (suite.path / "report.json").read_text()
    for text in (suite.cassette_text(), report, (suite.path / "report.md").read_text(), summary):
        assert key not in text
        assert CREDENTIAL not in text
    assert set(json.loads(report)["by_test"]) == {
        "test_secret_ids.py::test_env_key[<redacted:OPENAI_API_KEY>]",
        "test_secret_ids.py::test_sent_credential[<redacted>]",
    }
    assert {data["meta"]["test"] for data in suite.recordings().values()} == set(
        json.loads(report)["by_test"]
    )

    monkeypatch.setenv("PROMPT", "Hello again")
    suite.server.stop()
    missed = suite.run("-rN")
    missed.assert_outcomes(failed=2)
    ours = "\n".join(line for line in missed.outlines if not PYTEST_HEADER.match(line))
    assert "recorded by test_secret_ids.py::test_env_key[<redacted:OPENAI_API_KEY>]" in ours
    # A command that runs the test without naming the secret: every case of the parametrized test.
    assert "pytest --promptcache=record test_secret_ids.py::test_env_key\n" in ours
    assert "pytest --promptcache=record test_secret_ids.py::test_sent_credential\n" in ours
    assert key not in ours
    assert CREDENTIAL not in ours


def test_an_empty_secret_variable_hides_nothing_and_breaks_nothing(
    suite: Suite, monkeypatch: pytest.MonkeyPatch
) -> None:
    # CI often sets OPENAI_API_KEY="" (and a learned empty value would be "found" between every letter).
    monkeypatch.setenv("OPENAI_API_KEY", "")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "")
    suite.pytester.makepyfile(
        """
        import os

        import httpx

        BASE = os.environ["LLM_URL"]

        def test_empty_credentials():
            r = httpx.post(
                BASE + "/v1/chat/completions",
                headers={"authorization": "Bearer", "api-key": "", "x-amz-security-token": ""},
                json={"model": "gpt-4.1-mini", "messages": [{"role": "user", "content": "Plain words stay"}]},
            )
            assert r.json()["choices"][0]["message"]["content"] == "echo: Plain words stay"

        def test_empty_query_key():
            r = httpx.post(
                BASE + "/v1beta/models/gemini-2.5-flash:generateContent",
                params={"key": "", "subscription-key": ""},
                json={"contents": [{"parts": [{"text": "Gemini words stay"}]}]},
            )
            assert r.json()["candidates"][0]["content"]["parts"][0]["text"] == "echo: Gemini words stay"
        """
    )
    suite.run("--promptcache=record").assert_outcomes(passed=2)
    text = suite.cassette_text()
    assert "<redacted" not in text.replace("key=<redacted>", "")  # only the secret parameters' values
    assert "echo: Plain words stay" in text
    suite.server.stop()
    suite.run().assert_outcomes(passed=2)
