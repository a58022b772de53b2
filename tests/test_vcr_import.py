"""``promptcache import vcr``: cassettes vcrpy recorded (here, for real, against the loopback server)
become recordings that replay offline, with what could not be converted and the endpoint rules the
other requests need printed."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import brotli  # type: ignore[import-untyped]
import openai
import pytest
import vcr
from conftest import FAKE_SECRETS, Suite
from llm_server import LLMServer
from vcr.request import Request
from vcr.serialize import serialize
from vcr.serializers import yamlserializer

from pytest_promptcache.cli import main

GPT = "gpt-4.1-mini"


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    monkeypatch.chdir(tmp_path)
    for name, value in FAKE_SECRETS.items():
        monkeypatch.setenv(name, value)
    return tmp_path


def client(server: LLMServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url + "/v1", max_retries=0)


def ask(oai: openai.OpenAI, text: str, **kw: Any) -> Any:
    return oai.chat.completions.create(model=GPT, messages=[{"role": "user", "content": text}], **kw)


def run_import(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["import", "vcr", *args])
    out, err = capsys.readouterr()
    return code, out, err


def recordings(project: Path) -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted((project / "cassettes").glob("*.json"))]


def test_yaml_and_json_cassettes_become_recordings(
    project: Path, llm_server: LLMServer, capsys: pytest.CaptureFixture[str]
) -> None:
    oai = client(llm_server)
    with vcr.use_cassette(str(project / "tests/cassettes/test_app/test_chat.yaml")):
        ask(oai, "Hello there")
        list(ask(oai, "Stream it", stream=True, stream_options={"include_usage": True}))
    with vcr.use_cassette(str(project / "tests/cassettes/test_app/test_embed.json"), serializer="json"):
        oai.embeddings.create(model="text-embedding-3-small", input="refund policy")

    code, out, err = run_import(capsys, "tests")
    assert (code, err) == (0, "")
    assert out == "read 3 interactions from 2 cassettes; wrote 3 recordings to cassettes\n"
    by_path = {r["request"]["path"]: r for r in recordings(project)}
    chat, embed = by_path["/v1/chat/completions"], by_path["/v1/embeddings"]
    assert chat["request"]["body"]["messages"][0]["content"] in ("Hello there", "Stream it")
    streamed = next(r for r in recordings(project) if r["request"]["body"].get("stream"))
    assert streamed["response"]["events"][-1] == {"text": "[DONE]"}
    assert streamed["meta"]["usage"]["output_tokens"] > 0
    assert embed["meta"]["imported_from"] == "tests/cassettes/test_app/test_embed.json #1"
    assert all("scope" not in r["request"] for r in recordings(project))
    assert main(["verify"]) == 0


def test_imported_recordings_replay_offline(
    suite: Suite, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    suite.pytester.makeconftest(
        """
        import os, openai, pytest

        @pytest.fixture
        def oai():
            return openai.OpenAI(base_url=os.environ["LLM_URL"] + "/v1", max_retries=0)
        """
    )
    suite.pytester.makepyfile(
        test_app="""
        import pytest

        @pytest.mark.vcr
        def test_polls(oai, vcr):
            ids = [oai.chat.completions.create(
                model="gpt-4.1-mini", messages=[{"role": "user", "content": "done?"}]
            ).id for _ in range(3)]
            assert len(set(ids)) == 3
            assert vcr.play_count == (0 if vcr.record_mode == "once" else 3)
        """
    )
    suite.run("-p", "no:promptcache", "--record-mode=once").assert_outcomes(passed=1)
    monkeypatch.chdir(suite.path)
    code, out, _ = run_import(capsys, "cassettes")
    assert code == 0
    assert "3 of them scoped to their cassette" in out
    suite.server.stop()
    result = suite.run("-p", "no:recording", "-o", "promptcache_vcr=native")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["mode replay: 3 LLM calls: 3 replayed"])


def raw_cassette(path: Path, interactions: list[tuple[Request, dict[str, Any]]]) -> None:
    """A cassette written by vcrpy's own serializer."""
    path.parent.mkdir(parents=True, exist_ok=True)
    requests = [req for req, _ in interactions]
    path.write_text(
        serialize({"requests": requests, "responses": [r for _, r in interactions]}, yamlserializer)
    )


def chat_request(text: str, host: str = "https://api.openai.com", **headers: str) -> Request:
    body = json.dumps({"model": GPT, "messages": [{"role": "user", "content": text}]})
    return Request(
        "POST", f"{host}/v1/chat/completions", body, {"content-type": "application/json", **headers}
    )


def chat_response(answer: str, encoding: str | None = None) -> dict[str, Any]:
    body = json.dumps({"id": answer, "model": GPT, "choices": [{"message": {"content": answer}}]}).encode()
    headers = {"content-type": ["application/json"]}
    if encoding == "br":
        body, headers["content-encoding"] = brotli.compress(body), ["br"]
    return {"status": {"code": 200, "message": "OK"}, "headers": headers, "body": {"string": body}}


def test_gzip_and_brotli_bodies_are_stored_decoded(
    project: Path, llm_server: LLMServer, capsys: pytest.CaptureFixture[str]
) -> None:
    gz = project / "cassettes_vcr/gzip.yaml"
    with vcr.use_cassette(str(gz), decode_compressed_response=False):
        ask(client(llm_server), "Compressed", extra_headers={"x-test-gzip": "1"})
    assert "!!binary" in gz.read_text()  # vcr kept the gzip bytes, base64 in the YAML
    raw_cassette(
        project / "cassettes_vcr/br.yaml", [(chat_request("Brotli"), chat_response("br answer", "br"))]
    )

    assert run_import(capsys, "cassettes_vcr")[0] == 0
    answers = sorted(json.dumps(r["response"]["body"]) for r in recordings(project))
    assert "echo: Compressed" in answers[1]
    assert '"id": "br answer"' in answers[0]
    assert all("content-encoding" not in r["response"]["headers"] for r in recordings(project))


def test_a_serializer_of_the_suite_s_own(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (project / "suite_serializer.py").write_text(
        "import json\n"
        "class Wrapped:\n"
        "    def deserialize(self, text):\n"
        "        return json.loads(text)['wrapped']\n"
        "    def serialize(self, data):\n"
        "        return json.dumps({'wrapped': data})\n"
        "serializer = Wrapped()\n"
    )
    cassette = project / "vcr/test_x.json"
    raw_cassette(cassette, [(chat_request("Hi"), chat_response("hi"))])
    data = yamlserializer.deserialize(cassette.read_text())
    cassette.write_text(json.dumps({"wrapped": json.loads(json.dumps(data, default=lambda b: b.decode()))}))

    code, _, err = run_import(capsys, "vcr")
    assert code == 1  # vcr's JSON serializer cannot read it
    assert "vcr/test_x.json: is not a cassette this serializer reads (KeyError" in err
    code, out, err = run_import(capsys, "vcr", "--serializer", "suite_serializer:serializer")
    assert (code, err) == (0, "")
    assert out.startswith("read 1 interaction from 1 cassette; wrote 1 recording")


def test_a_request_answered_differently_is_scoped_to_each_cassette_in_order(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    same = chat_request("Status?")
    raw_cassette(project / "vcr/test_a.yaml", [(same, chat_response("a1")), (same, chat_response("a2"))])
    raw_cassette(project / "vcr/test_b.yaml", [(same, chat_response("b1"))])
    # Copies of one cassette: one answer, one recording any test may use.
    once = [(chat_request("Hello"), chat_response("hello"))]
    raw_cassette(project / "vcr/test_c.yaml", once)
    raw_cassette(project / "vcr/test_d.yaml", once)

    code, out, _ = run_import(capsys, "vcr")
    assert code == 0
    assert "wrote 4 recordings" in out
    assert "3 of them scoped to their cassette" in out
    scoped = {
        (r["request"]["scope"]["name"], r["request"]["scope"]["index"]): r["response"]["body"]["id"]
        for r in recordings(project)
        if "scope" in r["request"]
    }
    assert scoped == {
        ("vcr/test_a.yaml", 0): "a1",
        ("vcr/test_a.yaml", 1): "a2",
        ("vcr/test_b.yaml", 0): "b1",
    }
    assert {r["schema_version"] for r in recordings(project) if "scope" in r["request"]} == {4}


def test_what_cannot_be_converted_is_listed_and_the_rest_imported(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = chat_response("z")
    broken["headers"]["content-encoding"] = ["zstd"]
    raw_cassette(
        project / "vcr/mixed.yaml", [(chat_request("ok"), chat_response("ok")), (chat_request("z"), broken)]
    )
    (project / "vcr/garbage.yaml").write_text("interactions: [unclosed\n")
    (project / "vcr/old.yaml").write_text("- request: {uri: x}\n")  # vcr before 1.0
    (project / "vcr/latin1.yaml").write_bytes(b"interactions: [caf\xe9]\n")

    code, out, err = run_import(capsys, "vcr")
    assert code == 1
    assert out.startswith("read 2 interactions from 1 cassette; wrote 1 recording")
    assert "could not convert (4):" in err
    assert "vcr/latin1.yaml: cannot be read: 'utf-8' codec can't decode" in err
    assert "vcr/mixed.yaml #2: unsupported content-encoding zstd" in err
    assert "vcr/garbage.yaml: is not a cassette this serializer reads" in err
    assert "vcr/old.yaml: is not a cassette this serializer reads (ValueError: Your cassette files" in err


def test_secrets_a_cassette_holds_never_reach_a_recording(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key = FAKE_SECRETS["OPENAI_API_KEY"]
    leaky = chat_request(f"my key is {key}", authorization=f"Bearer {key}")
    answer = chat_response(f"you said {key}")
    raw_cassette(project / "vcr/leaky.yaml", [(leaky, answer)])
    assert key in (project / "vcr/leaky.yaml").read_text()

    assert run_import(capsys, "vcr")[0] == 0
    text = "".join(p.read_text() for p in (project / "cassettes").glob("*.json"))
    assert key not in text
    assert "<redacted" in text
    assert main(["verify"]) == 0


def test_non_llm_requests_are_imported_with_the_rules_they_need(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    download = Request("GET", "https://files.example.com/img/cat.png?v=2", None, {})
    png = {"status": {"code": 200, "message": "OK"}, "headers": {}, "body": {"string": b"\x89PNG\xff"}}
    raw_cassette(
        project / "vcr/test_x.yaml", [(download, png), (chat_request("Describe"), chat_response("a cat"))]
    )

    code, out, _ = run_import(capsys, "vcr")
    assert code == 0
    assert out.splitlines()[1:] == [
        "1 request to endpoints that are not LLM APIs (served from recordings only once the configuration "
        "names them):",
        "promptcache_endpoints =",
        "    defaults",
        "    files.example.com/img/cat.png",
    ]
    image = next(r for r in recordings(project) if r["request"]["method"] == "GET")
    assert base64.b64decode(image["response"]["base64"]) == b"\x89PNG\xff"


def test_existing_recordings_are_kept_and_a_dry_run_writes_nothing(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    raw_cassette(project / "vcr/test_x.yaml", [(chat_request("Hi"), chat_response("hi"))])
    code, out, _ = run_import(capsys, "vcr", "--dry-run")
    assert (code, out) == (0, "read 1 interaction from 1 cassette; would write 1 recording to cassettes\n")
    assert not (project / "cassettes").exists()
    assert run_import(capsys, "vcr")[0] == 0
    (saved,) = (project / "cassettes").glob("*.json")
    saved.write_text(saved.read_text().replace('"hi"', '"edited by hand"'))
    code, out, _ = run_import(capsys, "vcr/test_x.yaml")
    assert out.splitlines() == [
        "read 1 interaction from 1 cassette; wrote 0 recordings to cassettes",
        "  1 recording already there, kept as they are",
    ]
    assert "edited by hand" in saved.read_text()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["nowhere"], "no such file or directory: nowhere"),
        (["."], "no cassettes (*.yaml, *.yml, *.json) under ."),
        ([".", "--serializer", "nocolon"], "--serializer 'nocolon': write MODULE:OBJECT"),
        ([".", "--serializer", "no_such_module:x"], "--serializer 'no_such_module:x' cannot be imported"),
        ([".", "--serializer", "json:dumps"], "--serializer 'json:dumps' has no deserialize(text) method"),
    ],
)
def test_usage_errors_say_what_to_do(
    project: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    code, _, err = run_import(capsys, *args)
    assert code == 2
    assert message in err


def test_without_vcrpy_the_import_says_how_to_install_it(
    project: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    monkeypatch.delitem(sys.modules, "pytest_promptcache.compat_vcr.importer", raising=False)
    for name in [n for n in sys.modules if n == "vcr" or n.startswith("vcr.")]:
        monkeypatch.setitem(sys.modules, name, None)  # as if it were not installed
    code, _, err = run_import(capsys, ".")
    assert code == 2
    assert err == "promptcache: reading vcrpy cassettes takes vcrpy: pip install 'pytest-promptcache[vcr]'\n"
