"""The ``promptcache`` command on real recording files written by the store."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from pytest_promptcache.cli import main
from pytest_promptcache.keys import key_of
from pytest_promptcache.models import (
    CanonicalRequest,
    RecordedResponse,
    Recording,
    RecordingMeta,
    SSEEvent,
)
from pytest_promptcache.scrub import SECRET_ENV_SUFFIXES
from pytest_promptcache.store.cassettes import CassetteStore

REPO = Path(__file__).resolve().parent.parent
PLANTED = "sk-ant-api03-PLANTEDabcdefghijklmnopqrstuvwxyz0123"


def recording(
    body: dict[str, Any],
    response: RecordedResponse,
    *,
    test: str,
    recorded_at: datetime,
    host: str = "api.openai.com",
    path: str = "/v1/chat/completions",
    headers: dict[str, str] | None = None,
) -> Recording:
    request = CanonicalRequest(method="POST", host=host, path=path, headers=headers or {}, body=body)
    return Recording(
        key=key_of(request),
        request=request,
        response=response,
        meta=RecordingMeta(
            recorded_at=recorded_at,
            test=test,
            url=f"https://{host}{path}",
            latency_ms=12.5,
            plugin_version="0.1.0",
        ),
    )


def chat(text: str, answer: str, *, model: str = "gpt-4.1-mini", **kw: Any) -> Recording:
    body = {"model": model, "messages": [{"role": "user", "content": text}]}
    response = RecordedResponse(
        status=200,
        headers={"content-type": "application/json"},
        body={
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": answer}}],
            "usage": {"prompt_tokens": 1200, "completion_tokens": 300, "total_tokens": 1500},
        },
    )
    kw.setdefault("test", "tests/test_app.py::test_summary")
    kw.setdefault("recorded_at", datetime(2025, 6, 1, 12, 30, tzinfo=UTC))
    return recording(body, response, **kw)


def anthropic_stream() -> Recording:
    def ev(name: str, data: dict[str, Any]) -> SSEEvent:
        return SSEEvent(event=name, data={"type": name, **data})

    events = [
        ev(
            "message_start",
            {"message": {"model": "claude-sonnet-4-6", "usage": {"input_tokens": 40, "output_tokens": 1}}},
        ),
        ev("content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}}),
        ev("content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": "Hello"}}),
        ev("content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": ", world"}}),
        ev("content_block_stop", {"index": 0}),
        ev("message_delta", {"delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 6}}),
        ev("message_stop", {}),
    ]
    return recording(
        {
            "model": "claude-sonnet-4-6",
            "max_tokens": 64,
            "stream": True,
            "messages": [{"role": "user", "content": "hi"}],
        },
        RecordedResponse(status=200, headers={"content-type": "text/event-stream"}, events=events),
        host="api.anthropic.com",
        path="/v1/messages",
        headers={"anthropic-version": "2023-06-01"},
        test="tests/test_app.py::test_stream",
        recorded_at=datetime(2026, 1, 10, 8, 0, tzinfo=UTC),
    )


@pytest.fixture(autouse=True)
def no_secret_env(monkeypatch: pytest.MonkeyPatch) -> None:
    # verify treats every *_API_KEY/*_TOKEN/*_SECRET value as a secret: the machine's own must not count.
    for name in list(os.environ):
        if name.upper().endswith(SECRET_ENV_SUFFIXES):
            monkeypatch.delenv(name)


@pytest.fixture
def recs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Recording]:
    """Three recordings in tmp_path/cassettes, found by default from a pytest.ini in the cwd."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    store = CassetteStore(tmp_path / "cassettes")
    made = {
        "chat": chat("Summarise: the customer wants a refund", "A refund request."),
        "stream": anthropic_stream(),
        "private": chat(
            "Classify this ticket",
            "billing",
            model="acme-private-7b",
            test="tests/test_private.py::test_private",
            recorded_at=datetime(2026, 3, 1, tzinfo=UTC),
        ),
    }
    for rec in made.values():
        store.put(rec)
    return made


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_ls_lists_recordings_oldest_first_with_tokens_and_cost(
    recs: dict[str, Recording], capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "ls")
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0].split()[:4] == ["key", "endpoint", "host", "model"]
    chat_line, stream_line, private_line = lines[1:4]
    assert chat_line.startswith(recs["chat"].key[:12] + "  POST /v1/chat/completions  api.openai.com")
    # gpt-4.1-mini at 2025 prices: 1200 in at $0.40/M + 300 out at $1.60/M
    assert "2025-06-01 12:30:00" in chat_line
    assert "1,200/300" in chat_line
    assert "$0.00096" in chat_line
    assert chat_line.endswith("tests/test_app.py::test_summary")
    assert stream_line.startswith(recs["stream"].key[:12])
    assert "claude-sonnet-4-6" in stream_line
    assert "40/6" in stream_line
    assert "acme-private-7b" in private_line
    assert "unpriced" in private_line
    assert "3 recordings in cassettes" in out
    assert "(1 unpriced)" in out


def test_ls_filters_and_json(recs: dict[str, Recording], capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "ls", "--model", "CLAUDE")
    assert code == 0
    assert recs["stream"].key[:12] in out
    assert recs["chat"].key[:12] not in out
    assert "1 of 3 recordings in cassettes" in out

    _, out, _ = run(capsys, "ls", "--test", "test_private", "--endpoint", "chat/completions")
    assert recs["private"].key[:12] in out
    assert recs["chat"].key[:12] not in out

    _, out, _ = run(capsys, "ls", "--endpoint", "nothing-like-this")
    assert "no recordings in cassettes match (of 3)" in out

    code, out, _ = run(capsys, "ls", "--json")
    rows = {row["key"]: row for row in json.loads(out)["recordings"]}
    assert rows[recs["chat"].key]["cost_usd"] == pytest.approx(0.00096)
    assert rows[recs["chat"].key]["usage"]["input_tokens"] == 1200
    assert rows[recs["private"].key]["cost_usd"] is None
    assert rows[recs["stream"].key]["stream"] is True
    assert rows[recs["stream"].key]["recorded_at"] == "2026-01-10T08:00:00Z"


def test_ls_older_than(recs: dict[str, Recording], capsys: pytest.CaptureFixture[str]) -> None:
    now = datetime.now(UTC)
    store = CassetteStore(Path("cassettes"))
    fresh = chat("fresh", "new", recorded_at=now - timedelta(hours=2))
    stale = chat("stale", "old", recorded_at=now - timedelta(days=40))
    store.put(fresh)
    store.put(stale)
    cases = {"1h": {fresh.key, stale.key}, "3h": {stale.key}, "30d": {stale.key}, "6w": set()}
    for age, expected in cases.items():
        _, out, _ = run(capsys, "ls", "--json", "--older-than", age)
        keys = {row["key"] for row in json.loads(out)["recordings"]}
        assert keys & {fresh.key, stale.key} == expected, age


def test_ls_older_than_rejects_bad_ages(
    recs: dict[str, Recording], capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, "ls", "--older-than", "3 months")
    assert code == 2
    assert "12h, 30d, 2w" in err


def test_show_by_prefix(recs: dict[str, Recording], capsys: pytest.CaptureFixture[str]) -> None:
    key = recs["chat"].key
    code, out, err = run(capsys, "show", key[:6])
    assert (code, err) == (0, "")
    assert out.startswith("POST https://api.openai.com/v1/chat/completions\n")
    assert f"key          {key}" in out
    assert "test         tests/test_app.py::test_summary" in out
    assert "recorded_at  2025-06-01 12:30:00 UTC" in out
    assert "tokens       1,200 in, 300 out" in out
    assert '  "model": "gpt-4.1-mini"' in out
    assert "-- response 200 (application/json)" in out
    assert '        "content": "A refund request."' in out


def test_show_stream_one_event_a_line_and_the_text(
    recs: dict[str, Recording], capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "show", f"cassettes/{recs['stream'].key}.json")
    assert code == 0
    assert "anthropic-version: 2023-06-01" in out
    assert "-- response 200 (text/event-stream, 7 events)" in out
    assert (
        'event=content_block_delta {"type":"content_block_delta","index":0,'
        '"delta":{"type":"text_delta","text":", world"}}'
    ) in out.splitlines()
    assert out.rstrip().endswith("-- assembled text\nHello, world")


def _colliding_pair() -> tuple[Recording, Recording]:
    """Two real recordings whose keys share their first four characters."""
    seen: dict[str, int] = {}
    for i in range(5000):
        body: dict[str, Any] = {
            "model": "gpt-4.1-mini",
            "messages": [{"role": "user", "content": f"question {i}"}],
        }
        key = key_of(
            CanonicalRequest(method="POST", host="api.openai.com", path="/v1/chat/completions", body=body)
        )
        first = seen.setdefault(key[:4], i)
        if first != i:
            return chat(f"question {first}", "answer"), chat(f"question {i}", "answer")
    raise AssertionError("no colliding prefix found")


def test_show_ambiguous_and_unknown_prefixes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a, b = _colliding_pair()
    store = CassetteStore(tmp_path)
    store.put(a)
    store.put(b)
    prefix = a.key[:4]

    code, out, err = run(capsys, "--dir", str(tmp_path), "show", prefix)
    assert (code, out) == (2, "")
    assert f"key prefix '{prefix}' matches 2 recordings" in err
    assert a.key in err
    assert b.key in err
    assert "Traceback" not in err

    unknown = next(p for p in ("0000", "ffff", "abcd") if p != prefix)
    code, _, err = run(capsys, "show", unknown, "--dir", str(tmp_path))
    assert code == 2
    assert f"no recording with key '{unknown}'" in err

    code, _, err = run(capsys, "show", "abc", "--dir", str(tmp_path))
    assert code == 2
    assert "at least 4 characters" in err


def test_diff_shows_what_changed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = CassetteStore(tmp_path)
    a = chat("I was charged twice", "refund")
    b = chat("I was charged three times", "refund")
    store.put(a)
    store.put(b)
    code, out, _ = run(capsys, "diff", a.key[:8], b.key[:8], "--dir", str(tmp_path))
    assert code == 0
    lines = out.splitlines()
    assert f"--- {a.key[:12]} request" in lines
    assert f"+++ {b.key[:12]} request" in lines
    assert '-        "content": "I was charged twice",' in lines
    assert '+        "content": "I was charged three times",' in lines
    assert "responses are identical" in lines


def test_diff_of_streams_is_per_event(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = CassetteStore(tmp_path)
    a = anthropic_stream()
    events = list(a.response.events or [])
    events[3] = SSEEvent(
        event="content_block_delta",
        data={"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": ", there"}},
    )
    b = recording(
        {"model": "claude-sonnet-4-6", "messages": [{"role": "user", "content": "hi again"}]},
        a.response.model_copy(update={"events": events}),
        host="api.anthropic.com",
        path="/v1/messages",
        test="t",
        recorded_at=a.meta.recorded_at,
    )
    store.put(a)
    store.put(b)
    _, out, _ = run(capsys, "--dir", str(tmp_path), "diff", a.key, b.key)
    changed = [line for line in out.splitlines() if line.startswith(("-event", "+event"))]
    assert len(changed) == 2
    assert '"text":", world"' in changed[0]
    assert '"text":", there"' in changed[1]


def _report(path: Path, **data: Any) -> str:
    path.write_text(json.dumps({"schema_version": 1, "mode": "replay", **data}))
    return str(path)


def test_prune_deletes_exactly_the_unused(
    recs: dict[str, Recording], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    unused = [recs["chat"].key, recs["private"].key]
    report = _report(tmp_path / "report.json", unused_recordings=unused, unused_recordings_complete=True)

    def files() -> list[str]:
        return sorted(p.name for p in (tmp_path / "cassettes").iterdir())

    before = files()

    code, out, _ = run(capsys, "prune", "--unused", report, "--dry-run")
    assert code == 0
    assert files() == before
    assert f"would delete cassettes/{recs['chat'].key}.json  (tests/test_app.py::test_summary)" in out
    assert "would delete 2 recordings" in out
    assert "nothing was deleted (dry run)" in out

    code, out, _ = run(capsys, "prune", "--unused", report)
    assert code == 0
    assert files() == [f"{recs['stream'].key}.json"]
    assert f"deleted cassettes/{recs['private'].key}.json" in out
    assert "deleted 2 recordings" in out

    code, out, _ = run(capsys, "prune", "--unused", report)
    assert code == 0
    assert out.count("already gone: cassettes/") == 2
    assert "deleted 0 recordings (0 B) from cassettes, 2 already gone" in out


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ({"totals": {}}, "has no unused_recordings list"),
        ({"unused_recordings": ["x"], "unused_recordings_complete": False}, "comes from a partial run"),
        ({"unused_recordings": ["../../pytest.ini"]}, "not recording keys"),
        ({"unused_recordings": "all"}, "not a list of keys"),
    ],
)
def test_prune_refuses_reports_it_cannot_trust(
    recs: dict[str, Recording],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    content: dict[str, Any],
    message: str,
) -> None:
    report = _report(tmp_path / "report.json", **content)
    code, _, err = run(capsys, "prune", "--unused", report)
    assert code == 2
    assert message in err
    assert len(list((tmp_path / "cassettes").iterdir())) == 3
    assert (tmp_path / "pytest.ini").exists()


def test_prune_unreadable_report(
    recs: dict[str, Recording], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, "prune", "--unused", str(tmp_path / "missing.json"))
    assert code == 2
    assert "cannot read the report" in err
    (tmp_path / "broken.json").write_text("{not json")
    code, _, err = run(capsys, "prune", "--unused", str(tmp_path / "broken.json"))
    assert code == 2
    assert "is not JSON" in err


def test_verify_passes_a_clean_directory(
    recs: dict[str, Recording], capsys: pytest.CaptureFixture[str]
) -> None:
    (Path("cassettes") / ".gitkeep").write_text("")
    code, out, _ = run(capsys, "verify")
    assert code == 0
    assert "4 files (3 recordings) in cassettes: no problems" in out


def _line_of(path: Path, needle: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), start=1) if needle in line)


def test_verify_finds_a_planted_key(recs: dict[str, Recording], capsys: pytest.CaptureFixture[str]) -> None:
    leaky = chat("What is my key?", f"Your key is {PLANTED}", test="tests/test_leak.py::test_leak")
    CassetteStore(Path("cassettes")).put(leaky)
    path = Path("cassettes") / f"{leaky.key}.json"
    code, out, _ = run(capsys, "verify")
    assert code == 1
    line = _line_of(path, PLANTED)
    assert (
        f"cassettes/{leaky.key}.json:{line}: what looks like an Anthropic key (sk-ant-...) (sk-ant…)" in out
    )
    assert PLANTED not in out
    assert "promptcache verify: 1 problem in 4 files (4 recordings) in cassettes" in out


def test_verify_finds_the_value_of_a_secret_env_var(
    recs: dict[str, Recording], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "svc-live-7f3a9c1e5b"  # no known key shape: only the environment says it is a secret
    leaky = chat("Call the service", f"used credential {secret} ok")
    CassetteStore(Path("cassettes")).put(leaky)
    path = Path("cassettes") / f"{leaky.key}.json"
    assert run(capsys, "verify")[0] == 0

    monkeypatch.setenv("MY_SERVICE_API_KEY", secret)
    code, out, _ = run(capsys, "verify")
    assert code == 1
    line = _line_of(path, secret)
    assert f"{path}:{line}: the value of $MY_SERVICE_API_KEY (svc-li…)" in out
    assert secret not in out


def test_verify_schema_key_and_stray_files(
    recs: dict[str, Recording], capsys: pytest.CaptureFixture[str]
) -> None:
    cassettes = Path("cassettes")
    # A request edited by hand after recording: the file name still matches "key", the request does not.
    edited = cassettes / f"{recs['chat'].key}.json"
    edited.write_text(edited.read_text().replace("wants a refund", "wants a discount"))
    broken = cassettes / ("ab" * 32 + ".json")
    broken.write_text('{\n  "schema_version": 1,\n  "key": oops\n}\n')
    wrong_schema = cassettes / ("cd" * 32 + ".json")
    wrong_schema.write_text('{"schema_version": 99}')
    (cassettes / f".{recs['stream'].key}.json.4242.tmp").write_text("{")
    (cassettes / "notes.txt").write_text(f"token {PLANTED}\n")

    code, out, _ = run(capsys, "verify")
    assert code == 1
    assert f"{edited}: unusable recording: its request was edited after recording" in out
    assert f"{broken}:3: not valid JSON" in out
    assert f"{wrong_schema}: unusable recording: schema_version 99" in out
    assert f"cassettes/.{recs['stream'].key}.json.4242.tmp: a temp file left by an interrupted write" in out
    assert "cassettes/notes.txt: not a recording" in out
    assert "cassettes/notes.txt:1: what looks like an Anthropic key" in out
    assert "6 problems" in out


def test_verify_only_the_files_given(
    recs: dict[str, Recording], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # As pre-commit runs it: paths relative to the repository, whatever the configured directory holds.
    leaky = chat("leak", PLANTED)
    CassetteStore(Path("cassettes")).put(leaky)
    clean = f"cassettes/{recs['chat'].key}.json"
    shutil.move("cassettes", "moved")
    clean = clean.replace("cassettes", "moved")
    code, out, _ = run(capsys, "verify", clean, f"moved/{recs['stream'].key}.json")
    assert code == 0
    assert "2 files (2 recordings)" in out
    code, out, _ = run(capsys, "verify", clean, f"moved/{leaky.key}.json", "moved/gone.json")
    assert code == 1
    assert f"moved/{leaky.key}.json:" in out
    assert "moved/gone.json: no such file" in out
    assert not any(line.startswith(clean) for line in out.splitlines())


def test_stats_by_model(recs: dict[str, Recording], capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "stats")
    assert code == 0
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line and not line.startswith(" ")}
    assert rows["gpt-4.1-mini"][1:2] == ["1"]
    assert rows["gpt-4.1-mini"][-1] == "$0.00096"
    assert rows["acme-private-7b"][-1] == "unpriced"
    assert rows["claude-sonnet-4-6"][4:7] == ["40", "0", "6"]
    assert rows["total"][1] == "3"
    assert rows["total"][4:7] == ["2,440", "0", "606"]
    assert rows["total"][-1] == "$0.00117+?"  # 0.00096 + claude's 40 in, 6 out; plus what is unpriced
    assert "unpriced: acme-private-7b (1 recording;" in out

    _, out, _ = run(capsys, "stats", "--json")
    data = json.loads(out)
    assert data["totals"]["recordings"] == 3
    assert data["by_model"]["acme-private-7b"]["unpriced"] == 1
    assert data["totals"]["size_bytes"] == sum(p.stat().st_size for p in Path("cassettes").iterdir())


def test_corrupt_recordings_are_listed_not_fatal(
    recs: dict[str, Recording], capsys: pytest.CaptureFixture[str]
) -> None:
    bad = Path("cassettes") / ("ef" * 32 + ".json")
    bad.write_text("{ truncated")
    for command in ("ls", "stats"):
        code, out, err = run(capsys, command)
        assert code == 1
        assert recs["chat"].key[:12] in out or "gpt-4.1-mini" in out
        assert f"{bad}: not valid JSON" in err
        assert "Traceback" not in err
    code, out, _ = run(capsys, "ls", "--json")
    assert code == 1
    assert json.loads(out)["errors"][0]["file"].endswith(bad.name)


def test_default_directory_from_pytest_ini(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "pytest.ini").write_text("[pytest]\naddopts = -q\npromptcache_dir = recs\n")
    (tmp_path / "tests" / "unit").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "tests" / "unit")

    code, _, err = run(capsys, "ls")
    assert code == 2
    assert err == (
        f"promptcache: no recordings directory at {tmp_path / 'recs'}; "
        "record with pytest --promptcache=record, or pass --dir\n"
    )

    rec = chat("hello", "hi")
    CassetteStore(tmp_path / "recs").put(rec)
    code, out, _ = run(capsys, "ls")
    assert code == 0
    assert rec.key[:12] in out
    assert f"1 recording in {tmp_path / 'recs'}" in out


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("pyproject.toml", '[project]\nname = "x"\n\n[tool.pytest.ini_options]\npromptcache_dir = "recs"\n'),
        ("tox.ini", "[tox]\nenvlist = py311\n\n[pytest]\npromptcache_dir = recs\n"),
        ("setup.cfg", "[metadata]\nname = x\n\n[tool:pytest]\npromptcache_dir = recs\n"),
    ],
)
def test_default_directory_from_other_config_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], name: str, text: str
) -> None:
    (tmp_path / name).write_text(text)
    # A tox.ini without a [pytest] section below it is not pytest's configuration and is passed over.
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "tox.ini").write_text("[tox]\n")
    monkeypatch.chdir(tmp_path / "sub")
    CassetteStore(tmp_path / "recs").put(chat("hello", "hi"))
    code, out, _ = run(capsys, "stats")
    assert code == 0
    assert f"1 recording in {tmp_path / 'recs'}" in out


def test_help_and_no_command(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--help")
    assert code == 0
    for command in ("ls", "show", "diff", "prune", "verify", "stats"):
        assert command in out
    code, _, err = run(
        capsys,
    )
    assert code == 2
    assert "usage: promptcache" in err


def _script() -> str:
    # The script installed next to this interpreter, so the test runs this checkout's entry point.
    beside = Path(sys.executable).parent / "promptcache"
    return str(beside) if beside.exists() else shutil.which("promptcache") or "promptcache"


def test_console_script_and_module(recs: dict[str, Recording], tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.upper().endswith(SECRET_ENV_SUFFIXES)}
    done = subprocess.run(
        [_script(), "verify"], cwd=tmp_path, env=env, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "no problems" in done.stdout

    # -X importtime lists every module imported: the command must not load pytest (an adapter like the plugin,
    # it reads the ini files itself).
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "pytest_promptcache", "show", recs["stream"].key[:8]],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.rstrip().endswith("Hello, world")
    imported = {line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines()}
    assert "pytest_promptcache.cli" in imported
    assert not imported & {"pytest", "_pytest", "pytest_promptcache.plugin"}


def test_pre_commit_hook_definition() -> None:
    yaml = pytest.importorskip("yaml")
    (hook,) = yaml.safe_load((REPO / ".pre-commit-hooks.yaml").read_text())
    assert hook["id"] == "promptcache-verify"
    assert hook["entry"] == "promptcache verify"
    assert hook["language"] == "python"
    assert hook["files"] == r"^cassettes/.*\.json$"
    assert hook["pass_filenames"] is True
