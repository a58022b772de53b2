"""The parts of Bedrock support that need no server: wildcard endpoint patterns, the model id in the
path, AWS event streams cut into messages whatever the chunking and re-framed when a secret is scrubbed
out, Bedrock usage in each shape it comes in, the schema version such recordings are written in, and the
urllib3 patch undone."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from typing import Any, ClassVar

import pytest
import urllib3
from bedrock_server import event, exception, frame
from botocore.eventstream import EventStreamBuffer  # type: ignore[import-untyped]

from pytest_promptcache import eventstream
from pytest_promptcache.clients import install, uninstall
from pytest_promptcache.keys import RawRequest
from pytest_promptcache.migrate import upgrade
from pytest_promptcache.models import (
    CanonicalRequest,
    RecordedResponse,
    Recording,
    RecordingMeta,
    TokenUsage,
    schema_version_for,
)
from pytest_promptcache.scrub import Scrubber
from pytest_promptcache.session import CacheSession
from pytest_promptcache.settings import EndpointPattern, Settings, SettingsError, parse_endpoints
from pytest_promptcache.streams import BodyRecorder, build_replay
from pytest_promptcache.usage import PriceBook, api_family, extract, measure

MESSAGES = [
    event("messageStart", {"role": "assistant"}),
    event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "hello"}}),
    event("metadata", {"usage": {"inputTokens": 10, "outputTokens": 2, "cacheReadInputTokens": 30}}),
]
WIRE = b"".join(MESSAGES)
# The last chunk of invoke-with-response-stream for a model without Anthropic's usage fields.
METRICS = {"amazon-bedrock-invocationMetrics": {"inputTokenCount": 9, "outputTokenCount": 4}}
METRICS_CHUNK = event("chunk", {"bytes": base64.b64encode(json.dumps(METRICS).encode()).decode()})


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/model/anthropic.claude-3-haiku-20240307-v1:0/converse", True),
        ("/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse", True),
        ("/prefix/model/m/converse", True),
        # An inference-profile ARN, decoded: its slashes are part of the model id.
        ("/model/arn:aws:bedrock:us-east-1:123:inference-profile/us.anthropic.claude/converse", True),
        ("/model/m/converse-stream", False),
        ("/model//converse", False),
        ("/model/m/converse/extra", False),
        ("/models/m/converse", False),
    ],
)
def test_wildcard_patterns_match_the_model_id_in_the_middle_of_the_path(path: str, expected: bool) -> None:
    assert (
        EndpointPattern.parse("/model/*/converse").matches("bedrock-runtime.amazonaws.com", path) is expected
    )


def test_default_endpoints_include_bedrock_and_suffix_patterns_still_work() -> None:
    settings = Settings(cassette_dir=__import__("pathlib").Path("."))
    for op in ("converse", "converse-stream", "invoke", "invoke-with-response-stream"):
        assert settings.is_llm_endpoint("h", f"/model/amazon.nova-lite-v1:0/{op}")
    assert settings.is_llm_endpoint("h", "/v1/chat/completions")
    assert not settings.is_llm_endpoint("h", "/model/x/list")
    (one_host,) = parse_endpoints(["llm.internal/model/*/generate"])
    assert one_host.matches("llm.internal", "/model/m/generate")
    assert not one_host.matches("other", "/model/m/generate")
    with pytest.raises(SettingsError, match="adjacent wildcards"):
        EndpointPattern.parse("/model/**/converse")


def test_the_model_id_comes_from_the_path() -> None:
    def model(path: str) -> str | None:
        return CanonicalRequest(method="POST", host="h", path=path).model

    assert (
        model("/model/anthropic.claude-3-haiku-20240307-v1:0/invoke")
        == "anthropic.claude-3-haiku-20240307-v1:0"
    )
    arn = "arn:aws:bedrock:us-east-1:123:inference-profile/us.anthropic.claude-sonnet-4-6"
    assert model(f"/model/{arn}/converse-stream") == arn
    assert api_family("/model/m/converse-stream") == "bedrock-converse"
    assert api_family("/model/m/invoke-with-response-stream") == "bedrock-invoke"


@pytest.mark.parametrize("size", [1, 5, 7, 64, len(WIRE)])
def test_the_framer_cuts_whole_messages_whatever_the_chunking(size: int) -> None:
    framer = eventstream.Framer()
    found: list[bytes] = []
    for start in range(0, len(WIRE), size):
        found += framer.feed(WIRE[start : start + size])
    assert found == MESSAGES
    assert not framer.partial


def test_a_recorder_keeps_each_message_exact_with_a_view_and_replays_them_as_chunks() -> None:
    done: list[RecordedResponse] = []
    recorder = BodyRecorder(
        status=200,
        headers=[("Content-Type", eventstream.MEDIA_TYPE)],
        on_complete=done.append,
        on_incomplete=lambda reason, failed: pytest.fail(reason),
    )
    for start in range(0, len(WIRE), 9):
        recorder.feed(WIRE[start : start + 9])
    recorder.ended()
    (response,) = done
    assert response.event_stream is not None
    assert [eventstream.event_type(m) for m in response.event_stream] == [
        "messageStart",
        "contentBlockDelta",
        "metadata",
    ]
    assert response.event_stream[1].payload == {"contentBlockIndex": 0, "delta": {"text": "hello"}}
    assert response.is_stream
    replay = build_replay(response)
    assert list(replay.chunks) == MESSAGES
    assert "content-length" not in dict(replay.headers)


@pytest.mark.parametrize(
    ("wire", "reason"),
    [
        (MESSAGES[0] + exception("throttlingException", "slow down"), "error message (throttlingException)"),
        (WIRE[:-3], "ended inside a message"),
        (b"\xff\xff\xff\xff" + WIRE, "claims"),
    ],
)
def test_a_stream_that_errs_is_cut_or_is_not_an_event_stream_is_never_saved(wire: bytes, reason: str) -> None:
    problems: list[tuple[str, bool]] = []
    recorder = BodyRecorder(
        status=200,
        headers=[("content-type", eventstream.MEDIA_TYPE)],
        on_complete=lambda r: pytest.fail("saved"),
        on_incomplete=lambda why, failed: problems.append((why, failed)),
    )
    recorder.feed(wire)
    recorder.ended()
    ((why, failed),) = problems
    assert reason in why
    assert failed


def _parse(raw: bytes) -> Any:
    parser = EventStreamBuffer()
    parser.add_data(raw)
    return next(parser)


def test_scrubbing_a_secret_out_reframes_the_message_and_leaves_clean_ones_byte_exact() -> None:
    secret = "sk-proj-LEAKEDabcdefghijklmnopqrstuvwxyz0123456789"
    inner = {"type": "content_block_delta", "delta": {"text": f"your key is {secret}"}}
    chunk = event("chunk", {"bytes": base64.b64encode(json.dumps(inner).encode()).decode()})
    scrubber = Scrubber(secret_headers=(), secret_params=(), patterns=(), env={"OPENAI_API_KEY": secret})
    clean = eventstream.message(MESSAGES[1])
    assert eventstream.scrubbed(clean, scrubber.json, scrubber.text) == clean
    leaked = eventstream.message(chunk)
    assert leaked.decoded == inner
    assert leaked.payload is None  # the wrapped base64 is shown decoded, not twice
    fixed = eventstream.scrubbed(leaked, scrubber.json, scrubber.text)
    raw = eventstream.raw_bytes(fixed)
    assert secret.encode() not in raw
    assert secret not in json.dumps(fixed.model_dump())
    # Still a valid message (botocore checks both checksums), headers kept, the secret replaced.
    parsed = _parse(raw)
    assert parsed.headers[":event-type"] == "chunk"
    text = json.loads(base64.b64decode(json.loads(parsed.payload)["bytes"]))["delta"]["text"]
    assert text == "your key is <redacted:OPENAI_API_KEY>"


def test_a_message_is_stored_without_a_view_when_it_cannot_be_decoded() -> None:
    broken = bytearray(MESSAGES[0])
    broken[-1] ^= 0xFF  # a wrong checksum
    stored = eventstream.message(bytes(broken))
    assert stored.headers is None
    assert stored.payload is None
    assert eventstream.raw_bytes(stored) == bytes(broken)
    binary = eventstream.message(frame({":event-type": "x"}, b"\xff\xfe not text"))
    assert binary.headers == {":event-type": "x"}
    assert binary.text is None


def _response(**fields: Any) -> RecordedResponse:
    return RecordedResponse(status=200, **fields)


@pytest.mark.parametrize(
    ("path", "response", "expected"),
    [
        (
            "/model/m/converse",
            _response(body={"usage": {"inputTokens": 5, "outputTokens": 3, "cacheWriteInputTokens": 7}}),
            TokenUsage(input_tokens=12, cache_write_tokens=7, output_tokens=3),
        ),
        (
            "/model/m/converse-stream",
            _response(event_stream=[eventstream.message(m) for m in MESSAGES]),
            TokenUsage(input_tokens=40, cached_input_tokens=30, output_tokens=2),
        ),
        (
            "/model/m/invoke",
            _response(body={"usage": {"input_tokens": 4, "cache_read_input_tokens": 6, "output_tokens": 1}}),
            TokenUsage(input_tokens=10, cached_input_tokens=6, output_tokens=1),
        ),
        (
            # A model whose body has no usage of Anthropic's shape: Bedrock's own counts in the headers.
            "/model/meta.llama3-8b-instruct-v1:0/invoke",
            _response(
                body={"generation": "hi"},
                headers={"x-amzn-bedrock-input-token-count": "8", "x-amzn-bedrock-output-token-count": "2"},
            ),
            TokenUsage(input_tokens=8, output_tokens=2),
        ),
        (
            "/model/m/invoke-with-response-stream",
            _response(event_stream=[eventstream.message(METRICS_CHUNK)]),
            TokenUsage(input_tokens=9, output_tokens=4),
        ),
        ("/model/m/invoke", _response(body={"generation": "no usage anywhere"}), None),
    ],
)
def test_bedrock_usage_in_each_shape(
    path: str, response: RecordedResponse, expected: TokenUsage | None
) -> None:
    assert extract(response, api_family(path))[0] == expected


def test_bedrock_prices_follow_the_model_id_in_the_path_not_the_name_in_the_body() -> None:
    """A global offer and a regional one of the same model cost differently: only the path tells."""
    import genai_prices

    usage = {"input_tokens": 1000, "output_tokens": 100}
    body = _response(body={"model": "claude-sonnet-4-5-20250929", "usage": usage})
    at = datetime(2026, 6, 1, tzinfo=UTC)
    for model_id in (
        "global.anthropic.claude-sonnet-4-5-20250929-v1:0",
        "anthropic.claude-sonnet-4-5-20250929-v1:0",
    ):
        path = f"/model/{model_id}/invoke"
        cost = measure(body, path, model_id, f"http://127.0.0.1:1{path}", at, PriceBook()).cost_usd
        expected = genai_prices.calc_price(
            genai_prices.Usage(input_tokens=1000, output_tokens=100),
            model_id,
            provider_id="aws",
            genai_request_timestamp=at,
        ).total_price
        assert cost == pytest.approx(float(expected), rel=1e-9)


def _recording(response: RecordedResponse) -> Recording:
    request = CanonicalRequest(method="POST", host="h", path="/model/m/converse-stream")
    from pytest_promptcache.keys import key_of

    meta = RecordingMeta(recorded_at=datetime.now(UTC), url="http://h/", latency_ms=1.0, plugin_version="0")
    return Recording(
        schema_version=schema_version_for(response),
        key=key_of(request),
        request=request,
        response=response,
        meta=meta,
    )


def test_only_event_stream_recordings_are_schema_3_and_migrate_leaves_them_be() -> None:
    stream = _recording(_response(event_stream=[eventstream.message(MESSAGES[0])]))
    plain = _recording(_response(body={"ok": True}))
    assert (stream.schema_version, plain.schema_version) == (3, 2)
    assert upgrade(stream, PriceBook()) is stream
    assert Recording.model_validate(stream.to_json_data()) == stream


def test_install_patches_urlopen_and_uninstall_restores_it(tmp_path: Any) -> None:
    from pytest_promptcache.settings import build_settings

    original = urllib3.HTTPConnectionPool.__dict__["urlopen"]
    session = CacheSession(
        build_settings(rootdir=tmp_path, cli_mode=None, cli_dir=None, env={}, ini={}), env={}
    )
    install(session)
    try:
        assert urllib3.HTTPConnectionPool.__dict__["urlopen"] is not original
        assert urllib3.HTTPConnectionPool.urlopen.__wrapped__ is original  # type: ignore[attr-defined]
    finally:
        uninstall(session)
    assert urllib3.HTTPConnectionPool.__dict__["urlopen"] is original


def test_a_raw_request_keys_the_same_however_the_path_is_encoded() -> None:
    from pytest_promptcache.clients.urllib3_send import raw_request

    class Pool:
        scheme, host, port = "https", "bedrock-runtime.us-east-1.amazonaws.com", 443
        headers: ClassVar[dict[str, str]] = {}

    encoded = raw_request(
        Pool(), "POST", "/model/a.b-v1%3A0/converse?x=1", {"X-Amz-Date": b"20260101"}, b"{}"
    )
    absolute = raw_request(
        Pool(),
        "POST",
        "https://bedrock-runtime.us-east-1.amazonaws.com/model/a.b-v1:0/converse?x=1",
        {},
        b"{}",
    )
    assert encoded.path == absolute.path == "/model/a.b-v1:0/converse"
    assert encoded.netloc == absolute.netloc == "bedrock-runtime.us-east-1.amazonaws.com"
    assert encoded.query == (("x", "1"),)
    assert encoded.headers == (("x-amz-date", "20260101"),)
    assert isinstance(encoded, RawRequest)


def test_replayed_urllib3_responses_are_independent_copies_read_any_way() -> None:
    from urllib3.exceptions import ResponseNotChunked

    from pytest_promptcache.clients.urllib3_send import ReplayResponse
    from pytest_promptcache.streams import Replay

    stream = Replay(
        status=200, headers=(("content-type", "text/event-stream"),), chunks=(b"data: 1\n\n", b"data: 22\n\n")
    )
    plain = Replay(
        status=200, headers=(("content-type", "application/json"), ("content-length", "2")), chunks=(b"{}",)
    )

    def serve(replay: Replay, preload: bool) -> Any:
        return ReplayResponse.serve(
            replay, method="POST", url="/v1/x", preload_content=preload, decode_content=True, retries=None
        )

    first, second = serve(stream, False), serve(stream, False)
    assert list(first.read_chunked()) == [b"data: 1\n\n", b"data: 22\n\n"]
    assert list(second.stream(4)) == [b"data", b": 1\n", b"\n", b"data", b": 22", b"\n\n"]
    assert list(serve(stream, False).read_chunked()) == list(
        stream.chunks
    )  # reading one left the next intact
    partly = serve(stream, False)
    assert partly.read(3) == b"dat"
    assert list(partly.read_chunked()) == [b"a: 1\n\n", b"data: 22\n\n"]
    first.headers["x-changed"] = "1"
    assert "x-changed" not in serve(stream, False).headers
    preloaded = serve(plain, True)
    assert preloaded.data == b"{}"
    assert preloaded.read() == b""
    assert serve(plain, False).read(1) == b"{"
    with pytest.raises(ResponseNotChunked):
        list(serve(plain, False).read_chunked())
    assert serve(plain, True).geturl() == "/v1/x"


def test_an_aws_secret_access_key_in_the_environment_is_scrubbed_wherever_it_appears() -> None:
    from pytest_promptcache.scrub import secret_env_values

    secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
    env = {"AWS_SECRET_ACCESS_KEY": secret}
    scrubber = Scrubber(secret_headers=(), secret_params=(), patterns=(), env=env)
    assert secret in secret_env_values(env)
    assert scrubber.text(f"the key is {secret}") == "the key is <redacted:AWS_SECRET_ACCESS_KEY>"
