"""urllib3 and what sends through it (requests, raw urllib3, boto3's bedrock-runtime), end to end against
the loopback fake provider: record, stop the server, replay offline with identical results; a replay
sends nothing; a changed prompt fails with the miss message; streams replay chunk for chunk and AWS
event streams byte for byte; tokens and dollars for Bedrock calls as genai-prices prices them."""

from __future__ import annotations

import base64
import json
import shutil
from datetime import datetime
from typing import Any

# Imported here so pytester's in-process runs find them in sys.modules instead of importing them for
# every run (boto3 costs about a second).
import boto3  # type: ignore[import-untyped]  # noqa: F401
import botocore.eventstream  # type: ignore[import-untyped]  # noqa: F401
import genai_prices
import pytest
import requests  # noqa: F401
import urllib3  # noqa: F401
from conftest import SUITES, Suite

TESTS = 14
BEDROCK = 7  # tests with "bedrock" in their name, the async one included
CALLS = 16  # test_urllib3_stream_and_read_n and the async test make two calls each
AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "AKIAFAKEKEYFORTESTS01",
    "AWS_SECRET_ACCESS_KEY": "fakeSecretAccessKeyForTests0123456789abcd",
    "AWS_SESSION_TOKEN": "FakeSessionTokenForTests0123456789abcdefghij",
}
SIGV4_HEADERS = (
    "authorization",
    "x-amz-date",
    "x-amz-security-token",
    "x-amz-content-sha256",
    "amz-sdk-invocation-id",
    "amz-sdk-request",
)
CLAUDE_ON_BEDROCK = "anthropic.claude-sonnet-4-5-20250929-v1:0"


@pytest.fixture
def app(suite: Suite, monkeypatch: pytest.MonkeyPatch) -> Suite:
    for source in (SUITES / "urllib3_app").glob("*.py"):
        shutil.copy(source, suite.path / source.name)
    for name, value in AWS_ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    # Nothing of the machine's own AWS setup, and never the instance metadata service.
    monkeypatch.setenv("AWS_CONFIG_FILE", str(suite.path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(suite.path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.delenv("PROMPT_PREFIX", raising=False)
    return suite


def record_bedrock(app: Suite) -> None:
    app.run("--promptcache=record", "-k", "bedrock").assert_outcomes(
        passed=BEDROCK, deselected=TESTS - BEDROCK
    )


def report(app: Suite, name: str = "r.json") -> dict[str, Any]:
    return json.loads((app.path / name).read_text())  # type: ignore[no-any-return]


def test_record_then_replay_offline_with_identical_results(app: Suite) -> None:
    recorded = app.run("--promptcache=record", "--promptcache-report=record.json")
    recorded.assert_outcomes(passed=TESTS)
    live = app.seen()
    assert app.server.count() == CALLS
    assert report(app, "record.json")["totals"]["recorded"] == CALLS
    assert len(app.recordings()) == CALLS

    app.server.stop()
    replayed = app.run("--promptcache-report=replay.json")
    replayed.assert_outcomes(passed=TESTS)
    assert report(app, "replay.json")["totals"]["replayed"] == CALLS
    # Bodies, ids, SSE lines, chunk boundaries, botocore's parsed events: what the live run showed.
    assert app.seen() == live


def test_a_replay_sends_nothing_even_with_the_server_up(app: Suite) -> None:
    app.run("--promptcache=record").assert_outcomes(passed=TESTS)
    app.server.reset()
    app.run().assert_outcomes(passed=TESTS)
    assert app.server.count() == 0


def test_a_changed_prompt_fails_every_test_with_the_miss_message(
    app: Suite, monkeypatch: pytest.MonkeyPatch
) -> None:
    app.run("--promptcache=record").assert_outcomes(passed=TESTS)
    app.server.reset()
    monkeypatch.setenv("PROMPT_PREFIX", "Hello")
    result = app.run()
    # Even test_a_caught_bedrock_error_still_fails_a_miss, whose code swallows botocore's error.
    result.assert_outcomes(failed=TESTS)
    out = result.stdout.str()
    assert out.count("promptcache: no recording for this request (mode: replay)") >= TESTS
    # botocore's error carries the miss too, named after it.
    assert "ClientError: An error occurred (PromptcacheMiss) when calling the Converse operation: " in out
    result.stdout.fnmatch_lines(
        ["*model/anthropic.claude-sonnet-4-5-20250929-v1:0/converse*", "*-*Hi: *", "*+*Hello: *"]
    )
    assert app.server.count() == 0


def test_aws_event_streams_are_stored_message_by_message_and_replayed_byte_for_byte(app: Suite) -> None:
    app.run("--promptcache=record", "-k", "event_stream_bytes or converse_stream").assert_outcomes(
        passed=2, deselected=TESTS - 2
    )
    live = app.seen()
    streams = [r for r in app.recordings().values() if r["request"]["path"].endswith("/converse-stream")]
    assert len(streams) == 2
    raw = next(r for r in streams if "raw event stream" in json.dumps(r["request"]))
    assert raw["schema_version"] == 3
    messages = raw["response"]["event_stream"]
    # The exact bytes the server sent, one message a chunk, and a readable view beside them.
    sent = [bytes.fromhex(c) for c in live["test_app.py::test_urllib3_event_stream_bytes"]]
    assert [base64.b64decode(m["base64"]) for m in messages] == sent
    assert [m["headers"][":event-type"] for m in messages][:2] == ["messageStart", "contentBlockDelta"]
    assert messages[-1]["payload"]["usage"]["outputTokens"] > 0
    # The file keeps one line per message.
    text = (app.cassettes / f"{raw['key']}.json").read_text()
    assert sum(1 for line in text.splitlines() if line.strip().startswith('{"headers"')) == len(messages)

    app.server.stop()
    app.run("-k", "event_stream_bytes or converse_stream").assert_outcomes(passed=2, deselected=TESTS - 2)
    assert app.seen() == live


def test_sigv4_headers_and_aws_credentials_never_reach_a_recording_or_a_key(
    app: Suite, monkeypatch: pytest.MonkeyPatch
) -> None:
    app.run("--promptcache=record", "-k", "bedrock").assert_outcomes(
        passed=BEDROCK, deselected=TESTS - BEDROCK
    )
    text = app.cassette_text().lower()
    for name in SIGV4_HEADERS:
        assert f'"{name}"' not in text, name
    for value in AWS_ENV.values():
        assert value.lower() not in text
    assert "aws4-hmac-sha256" not in text
    for recording in app.recordings().values():
        assert recording["request"]["headers"] == {}
    # Other credentials sign differently at another time: the same recordings serve.
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAOTHERKEYFORTESTS9")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "otherSecretAccessKeyForTests0123456789abc")
    monkeypatch.delenv("AWS_SESSION_TOKEN")
    app.server.stop()
    app.run("-k", "bedrock").assert_outcomes(passed=BEDROCK, deselected=TESTS - BEDROCK)


def _genai_cost(usage: dict[str, int], *, at: str) -> float:
    """What genai-prices says the call cost, from the server's own usage (Anthropic's shape)."""
    price = genai_prices.calc_price(
        genai_prices.Usage(
            input_tokens=usage["input_tokens"]
            + usage["cache_read_input_tokens"]
            + usage["cache_creation_input_tokens"],
            cache_read_tokens=usage["cache_read_input_tokens"],
            cache_write_tokens=usage["cache_creation_input_tokens"],
            output_tokens=usage["output_tokens"],
        ),
        CLAUDE_ON_BEDROCK,
        provider_id="aws",
        genai_request_timestamp=datetime.fromisoformat(at),
    )
    return float(price.total_price)


def test_bedrock_calls_are_reported_in_tokens_and_dollars(app: Suite) -> None:
    app.run("--promptcache=record", "-k", "bedrock").assert_outcomes(
        passed=BEDROCK, deselected=TESTS - BEDROCK
    )
    (sent,) = [r for r in app.server.requests if r.path.endswith("/invoke")]
    usage = sent.sent_usage
    assert usage["cache_read_input_tokens"] > 0
    assert usage["cache_creation_input_tokens"] > 0
    (recording,) = [r for r in app.recordings().values() if r["request"]["path"].endswith("/invoke")]
    expected = _genai_cost(usage, at=recording["meta"]["recorded_at"])

    app.server.stop()
    result = app.run("-v", "--promptcache-report=r.json", "-k", "bedrock")
    result.assert_outcomes(passed=BEDROCK, deselected=TESTS - BEDROCK)
    invoke = next(c for c in report(app)["by_model"].items() if c[0] == CLAUDE_ON_BEDROCK)[1]
    assert invoke["calls"] >= 1
    by_test = report(app)["by_test"]
    bucket = by_test["test_app.py::test_bedrock_invoke_model"]
    whole_input = (
        usage["input_tokens"] + usage["cache_read_input_tokens"] + usage["cache_creation_input_tokens"]
    )
    assert bucket["input_tokens"] == whole_input
    assert bucket["cached_input_tokens"] == usage["cache_read_input_tokens"]
    assert bucket["cache_write_tokens"] == usage["cache_creation_input_tokens"]
    assert bucket["output_tokens"] == usage["output_tokens"]
    assert bucket["saved_usd"] == pytest.approx(expected, rel=1e-9)
    assert expected > 0
    # Every Bedrock call is priced, the Converse ones (Claude and Nova) and the streams included.
    assert report(app)["unpriced_models"] == []
    assert report(app)["totals"]["calls_without_usage"] == 0
    result.stdout.fnmatch_lines(
        ["amazon.nova-lite-v1:0 * 3 *$0.00  $0.00000*", f"{CLAUDE_ON_BEDROCK} * 4 * 300 *$0.000*"]
    )


STREAM_FAULTS = """
import json, os
import boto3, pytest

BASE = os.environ["LLM_URL"]

@pytest.mark.parametrize("fault", ["fault-stream-error", "fault-cut"])
def test_stream(fault):
    client = boto3.client("bedrock-runtime", endpoint_url=BASE, region_name="us-east-1")
    r = client.converse_stream(modelId=f"amazon.nova-lite-v1:0+{fault}",
                               messages=[{"role": "user", "content": [{"text": "faulty"}]}])
    with pytest.raises(Exception):
        list(r["stream"])
"""


def test_event_streams_that_fail_midway_are_not_recorded(app: Suite) -> None:
    app.pytester.makepyfile(test_bedrock_stream_faults=STREAM_FAULTS)
    result = app.run("--promptcache=record", "--promptcache-report=r.json", "test_bedrock_stream_faults.py")
    result.assert_outcomes(passed=2)
    assert app.recordings() == {}
    totals = report(app)["totals"]
    assert totals["recorded"] == 0
    # Both went out and came back broken: the cut one failed; botocore stops reading at the exception
    # message, so that one ends as abandoned, its reason kept.
    assert totals["live"] == 2
    assert totals["errors"] == 1
    # Both are listed as not saved; the abandoned one with its reason.
    reasons = [unsaved["reason"] for unsaved in report(app)["not_saved"]]
    assert len(reasons) == 2
    assert any("error message (modelStreamErrorException)" in reason for reason in reasons)


ACROSS = """
import os
import httpx, requests

URL = os.environ["LLM_URL"] + "/model/amazon.nova-lite-v1%3A0/converse"
BODY = {"messages": [{"role": "user", "content": [{"text": "one recording, two libraries"}]}]}

def test_requests():
    assert requests.post(URL, json=BODY, timeout=10).json()["output"]

def test_httpx():
    # httpx writes the model id's colon as it is: the same request, the same key.
    assert httpx.post(URL.replace("%3A", ":"), json=BODY).json()["output"]
"""


def test_a_recording_made_through_requests_replays_through_httpx(app: Suite) -> None:
    app.pytester.makepyfile(test_across=ACROSS)
    app.run("--promptcache=record", "test_across.py::test_requests").assert_outcomes(passed=1)
    assert len(app.recordings()) == 1
    app.server.stop()
    result = app.run("--promptcache-report=r.json", "test_across.py::test_httpx")
    result.assert_outcomes(passed=1)
    assert report(app)["totals"]["replayed"] == 1


def test_start_up_imports_neither_urllib3_nor_pydantic_and_patches_on_import(
    suite: Suite, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A suite that makes no LLM call pays nothing for urllib3; requests imported mid-test is caught."""
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    suite.pytester.makepyfile(
        """
        import os, sys

        def test_lazy():
            assert not {"pydantic", "urllib3", "requests", "botocore"} & set(sys.modules)
            import requests, urllib3
            assert urllib3.HTTPConnectionPool.urlopen.__module__ == "pytest_promptcache.clients.urllib3"
            url = os.environ["LLM_URL"] + "/v1/chat/completions"
            reply = requests.post(url, json={"model": "m", "messages": [{"role": "user", "content": "late"}]})
            assert reply.status_code == 404 and reply.headers["x-promptcache"] == "miss"
        """
    )
    result = suite.run("-p", "pytest_promptcache.plugin", subprocess=True)
    result.assert_outcomes(failed=1)  # the miss fails the test, as it must
    result.stdout.fnmatch_lines(["promptcache: no recording for this request (mode: replay)"])
    assert suite.server.count() == 0


def test_patching_an_already_imported_urllib3_imports_nothing_heavy(
    suite: Suite, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    suite.pytester.makeconftest("import requests\n")
    suite.pytester.makepyfile(
        """
        import os, sys, urllib3

        def test_light():
            assert urllib3.HTTPConnectionPool.urlopen.__module__ == "pytest_promptcache.clients.urllib3"
            # Not an LLM endpoint: straight through, nothing heavy imported.
            assert urllib3.request("GET", os.environ["LLM_URL"] + "/health").status == 404
            assert "pydantic" not in sys.modules
        """
    )
    result = suite.run("-p", "pytest_promptcache.plugin", subprocess=True)
    result.assert_outcomes(passed=1)
    assert suite.server.count() == 1


MOCKED = """
import requests, responses

URL = "https://api.openai.com/v1/chat/completions"

@responses.activate
def test_mocked_with_responses():
    responses.add(responses.POST, URL, json={"id": "mocked"})
    assert requests.post(URL, json={"model": "m"}, timeout=10).json() == {"id": "mocked"}
"""


def test_requests_mocked_with_responses_are_left_to_responses(suite: Suite) -> None:
    suite.pytester.makepyfile(test_mocked=MOCKED)
    result = suite.run()
    result.assert_outcomes(passed=1)
    assert "LLM calls" not in result.stdout.str()
    assert not suite.cassettes.exists()


def test_urllib3_1_is_left_alone_with_a_warning_that_says_what_to_do(monkeypatch: pytest.MonkeyPatch) -> None:
    import urllib3._version

    from pytest_promptcache.clients.urllib3 import Urllib3Adapter

    monkeypatch.setattr(urllib3._version, "__version__", "1.26.20")
    original = urllib3.HTTPConnectionPool.__dict__["urlopen"]
    adapter = Urllib3Adapter()
    with pytest.warns(UserWarning, match=r"urllib3 1\.26\.20 is not intercepted.*install urllib3>=2"):
        adapter.imported("urllib3.connectionpool")
    assert urllib3.HTTPConnectionPool.__dict__["urlopen"] is original
    adapter.restore()
    assert urllib3.HTTPConnectionPool.__dict__["urlopen"] is original


CUT = """
import os
import pytest, requests, urllib3

BASE = os.environ["LLM_URL"]
MESSAGES = [{"role": "user", "content": "a b c d e"}]
BODY = {"model": "gpt-4.1-mini+fault-cut", "stream": True, "messages": MESSAGES}

def test_requests_stream_cut_midway():
    got = []
    with requests.post(BASE + "/v1/chat/completions", json=BODY, stream=True, timeout=10) as r:
        with pytest.raises(requests.exceptions.ChunkedEncodingError):
            for chunk in r.iter_content(chunk_size=None):
                got.append(chunk)
    # The events before the cut reached the client as they came: nothing waited for the whole body.
    assert len(got) == 2

def test_urllib3_stream_cut_midway():
    r = urllib3.request("POST", BASE + "/v1/messages", preload_content=False,
                        json={**BODY, "model": "claude-sonnet-4-6+fault-cut", "max_tokens": 9})
    got = []
    with pytest.raises(urllib3.exceptions.ProtocolError):
        for chunk in r.read_chunked():
            got.append(chunk)
    assert len(got) == 2
"""


def test_a_stream_cut_midway_reaches_the_client_chunk_by_chunk_and_is_not_recorded(app: Suite) -> None:
    app.pytester.makepyfile(test_cut=CUT)
    result = app.run("--promptcache=record", "--promptcache-report=r.json", "test_cut.py")
    result.assert_outcomes(passed=2)
    assert app.recordings() == {}
    assert report(app)["totals"]["errors"] == 2
