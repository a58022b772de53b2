"""Bounded costs: a replay miss against huge prompts and many recordings, and recording a huge SSE event.

    python benchmarks/bounds.py            # full: stores of 10,000 and 100,000 recordings, ~30 s on 2 cores
    python benchmarks/bounds.py --quick    # stores of 1,000 and 10,000, 8k-word prompts, ~1 minute

Targets (measured in one run, medians):
- a miss at 10,000 recordings under 30 ms, the first one of a session included; at 100,000 under 100 ms;
- a miss with a 64k-word prompt against similar 32k-word recordings under 1 s;
- a miss between two 32k-word prompts: bounded message, the changed word visible;
- a 10 MB SSE event arriving in 4 KB chunks recorded within 2x the time with the plugin off (the server
  in a process of its own, as a provider is), read by the openai SDK as a test's code reads a stream;
  also reported read as raw bytes, less than any client does (``SSE_CLIENTS``).

Every miss is timed in a fresh process (``--worker``), through the engine as the client adapters call
it, after the engine is built (a session's first LLM call builds it, replay or miss). "first" is the
session's first miss (imports on the miss path, loading the index, the search); "cold" is that with no
index yet (a fresh state directory: the first miss ever, or in a CI job without a cache); "next" is a
later miss in the same session. Stores are generated (a template recording with a different prompt per
file, the key recomputed as ``keys.key_of`` does): each prompt is 40 words drawn from a 2,000-word
vocabulary, and each miss changes one word of a recorded prompt, so the benchmark also checks that the
nearest recording found is the one the request was edited from. Writes ``benchmarks/bounds.json``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import select
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import _startup  # noqa: E402

HOST = "api.bench.test"
PATH = "/v1/chat/completions"
MODEL = "gpt-4.1-mini"
MARKER = "PROMPT_MARKER_0123456789"
VOCABULARY = [f"w{i:04d}" for i in range(2000)]
WORKER_TIMEOUT = 300.0  # seconds for one session's misses


def prompt(index: int, words: int = 40) -> str:
    rng = random.Random(index)
    return f"ticket {index}: " + " ".join(rng.choice(VOCABULARY) for _ in range(words))


def body(text: str) -> dict[str, Any]:
    return {"messages": [{"content": text, "role": "user"}], "model": MODEL}


# -- stores ----------------------------------------------------------------------------------------------


def _template() -> tuple[str, str, str]:
    """A recording file's text, its canonical request JSON and its key, with MARKER as the prompt."""
    from datetime import UTC, datetime

    from pytest_promptcache.keys import canonical_json, key_of
    from pytest_promptcache.models import CanonicalRequest, RecordedResponse, Recording, RecordingMeta
    from pytest_promptcache.store.files import dumps_recording

    request = CanonicalRequest(method="POST", host=HOST, path=PATH, body=body(MARKER))
    reply: dict[str, Any] = {
        "choices": [{"message": {"role": "assistant", "content": "ok"}}],
        "usage": {"total_tokens": 9},
    }
    recording = Recording(
        key=key_of(request),
        request=request,
        response=RecordedResponse(status=200, headers={"content-type": "application/json"}, body=reply),
        meta=RecordingMeta(
            recorded_at=datetime(2026, 1, 1, tzinfo=UTC),
            url=f"https://{HOST}{PATH}",
            latency_ms=1.0,
            plugin_version="bench",
        ),
    )
    return dumps_recording(recording.to_json_data()), canonical_json(request), recording.key


def write_store(directory: Path, prompts: Iterator[str]) -> list[str]:
    """One recording per prompt; returns their keys in order."""
    text, canonical, template_key = _template()
    directory.mkdir(parents=True, exist_ok=True)
    keys = []
    for p in prompts:
        escaped = json.dumps(p)[1:-1]
        key = hashlib.sha256(canonical.replace(MARKER, escaped).encode()).hexdigest()
        (directory / f"{key}.json").write_text(text.replace(MARKER, escaped).replace(template_key, key))
        keys.append(key)
    return keys


def edited(text: str, seed: int) -> str:
    """The prompt with one word replaced: a request that has no recording, but a nearest one."""
    words = text.split(" ")
    rng = random.Random(seed)
    words[rng.randrange(2, len(words))] = "CHANGED"
    return " ".join(words)


# -- the worker: misses in a fresh process ------------------------------------------------------------


def worker(store: str, state: str, bodies_file: str) -> None:
    from pytest_promptcache.keys import RawRequest
    from pytest_promptcache.session import CacheSession
    from pytest_promptcache.settings import build_settings

    ini = {"promptcache_state_dir": state}
    settings = build_settings(rootdir=Path(store), cli_mode="replay", cli_dir=store, env={}, ini=ini)
    session = CacheSession(settings, env={})
    engine = session.engine()
    out = []
    for raw_body in json.loads(Path(bodies_file).read_text()):
        raw = RawRequest("POST", "https", HOST, None, PATH, (), (), json.dumps(raw_body).encode())
        started = time.perf_counter()
        engine.start(raw)
        took = time.perf_counter() - started
        (message,) = session.context.take_problems()
        nearest = next((line for line in message.splitlines() if "nearest:" in line), "")
        out.append(
            {
                "seconds": took,
                "nearest": nearest.split()[1],
                "chars": len(message),
                "lines": message.count("\n") + 1,
                "shown": any(line.startswith("+") and "CHANGED" in line for line in message.splitlines()),
            }
        )
    print(json.dumps(out))


def misses(store: Path, state: Path, bodies: list[dict[str, Any]], workdir: Path) -> list[dict[str, Any]]:
    bodies_file = workdir / "bodies.json"
    bodies_file.write_text(json.dumps(bodies))
    cmd = [sys.executable, __file__, "--worker", str(store), str(state), str(bodies_file)]
    try:
        proc = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            env=_startup._clean_env(),
            check=False,
            timeout=WORKER_TIMEOUT,
        )
    except subprocess.TimeoutExpired:
        # The pre-index code can take many minutes on huge prompts: report that it did not finish.
        return [
            {"seconds": float("inf"), "nearest": "-", "chars": 0, "lines": 0, "shown": False} for _ in bodies
        ]
    if proc.returncode != 0:
        raise RuntimeError(f"worker failed:\n{proc.stderr}")
    result: list[dict[str, Any]] = json.loads(proc.stdout.splitlines()[-1])
    return result


# -- sections ---------------------------------------------------------------------------------------------


def scale(sizes: list[int], workdir: Path, rounds: int, log: Any) -> list[dict[str, Any]]:
    rows = []
    for size in sizes:
        store = workdir / f"store-{size}"
        started = time.perf_counter()
        keys = write_store(store, (prompt(i) for i in range(size)))
        log(f"  wrote {size:,} recordings in {time.perf_counter() - started:.1f} s")
        time.sleep(2.5)  # a committed store is not being written to; see the index's racy-clean check
        targets = [int((i + 0.5) * size / (rounds + 2)) for i in range(rounds + 2)]
        bodies = [body(edited(prompt(i), i)) for i in targets]
        state = workdir / f"state-{size}"
        cold = misses(store, state, bodies[:1], workdir)[0]
        firsts, nexts, found = [], [], 0
        for r in range(rounds):
            first, after = misses(store, state, [bodies[r + 1], bodies[(r + 2) % len(bodies)]], workdir)
            firsts.append(first["seconds"])
            nexts.append(after["seconds"])
            found += (first["nearest"] == f"{keys[targets[r + 1]]}.json") + (
                after["nearest"] == f"{keys[targets[(r + 2) % len(bodies)]]}.json"
            )
        row = {
            "size": size,
            "cold_s": cold["seconds"],
            "first_s": statistics.median(firsts),
            "next_s": statistics.median(nexts),
            "first_all_s": firsts,
            "next_all_s": nexts,
            "found_the_edited_recording": f"{found}/{2 * rounds}",
        }
        log(
            f"    miss at {size:>7,}: cold {cold['seconds'] * 1000:8.1f} ms, "
            f"first {row['first_s'] * 1000:7.1f} ms,"
            f" next {row['next_s'] * 1000:7.1f} ms; nearest was the edited recording {found}/{2 * rounds}"
        )
        rows.append(row)
        shutil.rmtree(store, ignore_errors=True)
    return rows


def long_prompts(words: int, workdir: Path, log: Any) -> list[dict[str, Any]]:
    """One recording of ``words`` words; a miss whose prompt differs from it by one word in the middle,
    by 1% of its words (scattered), or entirely (another text of the same vocabulary)."""
    rng = random.Random(1)
    text = [rng.choice(VOCABULARY) for _ in range(words)]
    store = workdir / "store-long"
    write_store(store, iter([" ".join(text)]))
    one = list(text)
    one[words // 2] = "CHANGED"
    scattered = list(text)
    for i in range(0, words, 100):
        scattered[i + 50] = "CHANGED"
    unrelated = [rng.choice(VOCABULARY) for _ in range(words)]
    rows: list[dict[str, Any]] = []
    for name, variant in (("one word", one), ("1% of words", scattered), ("unrelated", unrelated)):
        (miss,) = misses(store, workdir / f"state-long-{len(rows)}", [body(" ".join(variant))], workdir)
        row = {
            "words": words,
            "differs_by": name,
            "seconds": miss["seconds"],
            "message_chars": miss["chars"],
            "message_lines": miss["lines"],
            "changed_word_shown": miss["shown"],
        }
        log(
            f"    two {words:,}-word prompts, {name:>11}: {miss['seconds'] * 1000:9.0f} ms, message "
            f"{miss['chars']:,} chars / {miss['lines']} lines, "
            f"changed word shown: {row['changed_word_shown']}"
        )
        rows.append(row)
    return rows


def huge(words: int, recordings: int, workdir: Path, log: Any) -> dict[str, Any]:
    """A 2x``words``-word prompt against ``recordings`` similar ``words``-word recordings (the base text
    with a different word changed in each); the prompt is the base with another word changed, then
    ``words`` more."""
    rng = random.Random(2)
    base = [rng.choice(VOCABULARY) for _ in range(words)]

    def variant(i: int) -> str:
        text = list(base)
        text[(i + 1) * words // (recordings + 1)] = f"variant{i}"
        return " ".join(text)

    store = workdir / "store-huge"
    write_store(store, (variant(i) for i in range(recordings)))
    query = list(base)
    query[words // 3] = "CHANGED"
    query += [rng.choice(VOCABULARY) for _ in range(words)]
    state = workdir / "state-huge"
    cold, after = misses(store, state, [body(" ".join(query))] * 2, workdir)
    (first,) = misses(store, state, [body(" ".join(query))], workdir)
    row = {
        "prompt_words": 2 * words,
        "recording_words": words,
        "recordings": recordings,
        "cold_s": cold["seconds"],
        "first_s": first["seconds"],
        "next_s": after["seconds"],
        "nearest": first["nearest"],
        "message_chars": first["chars"],
    }
    log(
        f"    {2 * words:,}-word prompt vs {recordings} similar {words:,}-word recordings: cold "
        f"{cold['seconds'] * 1000:.0f} ms, first {first['seconds'] * 1000:.0f} ms, "
        f"next {after['seconds'] * 1000:.0f} ms"
    )
    return row


# -- recording a huge SSE event -----------------------------------------------------------------------------


class _BigEvent(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    payload = b""
    chunk = 4096

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length", 0)))
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("transfer-encoding", "chunked")
        self.end_headers()
        wire = self.payload + b"data: [DONE]\n\n"
        for i in range(0, len(wire), self.chunk):
            piece = wire[i : i + self.chunk]
            self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
        self.wfile.write(b"0\r\n\r\n")

    def log_message(self, format: str, *args: Any) -> None:
        pass


def serve_big_event(megabytes: int) -> None:
    """``--serve-sse MB``: the huge event's server, in a process of its own as a provider's is. As a
    thread of the benchmark's process it took the GIL from the client it served: the plugin-off time
    then came out at ~45 or ~80 ms from one round to the next, and the ratio with it."""
    _BigEvent.payload = b'data: {"text": "' + b"x" * (megabytes * 1024 * 1024) + b'"}\n\n'
    server = ThreadingHTTPServer(("127.0.0.1", 0), _BigEvent)
    print(server.server_address[1], flush=True)
    server.serve_forever()


def _start_server(megabytes: int) -> tuple[subprocess.Popen[str], int]:
    server = subprocess.Popen(
        [sys.executable, __file__, "--serve-sse", str(megabytes)], stdout=subprocess.PIPE, text=True
    )
    assert server.stdout is not None
    ready, _, _ = select.select([server.stdout], [], [], 60.0)
    line = server.stdout.readline() if ready else ""
    if not line.strip().isdigit():
        server.kill()
        raise RuntimeError("the SSE server did not start within 60 s")
    return server, int(line)


# How each client reads the stream. "sdk" is what a test's code does, and how the issue measured its
# plugin-off time (~0.1 s): the openai SDK turns the stream into events and each event's JSON into a
# chunk object. "raw" only counts the bytes httpx hands over, less than any LLM client does: the bound
# below which no client goes, so recording's cost shows in it undiluted.
SSE_CLIENTS = ("sdk", "raw")
SSE_KEY = "sk-proj-BOUNDSabcdefghijklmnopqrstuvwxyz0123456789"


def _read_sse(kind: str, client: Any, sdk: Any, base: str, r: int) -> int:
    if kind == "raw":
        with client.stream("POST", base + PATH, json=body(f"round {r}")) as response:
            return sum(len(c) for c in response.iter_raw())
    stream = sdk.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": f"round {r}"}], stream=True
    )
    size = 0
    for chunk in stream:
        text = (chunk.model_extra or {}).get("text")
        size += len(text) if isinstance(text, str) else 0
    return size


def sse(megabytes: int, rounds: int, workdir: Path, log: Any) -> dict[str, Any]:
    """Recording one huge event, with each client of ``SSE_CLIENTS``; the plugin off and recording
    interleaved, alternating which goes first."""
    import httpx2
    import openai

    from pytest_promptcache.clients import install, uninstall
    from pytest_promptcache.session import CacheSession
    from pytest_promptcache.settings import build_settings

    server, port = _start_server(megabytes)
    base = f"http://127.0.0.1:{port}"
    times: dict[str, dict[str, list[float]]] = {kind: {"off": [], "record": []} for kind in SSE_CLIENTS}
    try:
        with httpx2.Client(timeout=120) as client:
            sdk = openai.OpenAI(api_key=SSE_KEY, base_url=base + "/v1", http_client=client, max_retries=0)
            # Round 0 warms up (the plugin's first LLM call imports its engine): not counted.
            for r in range(rounds + 1):
                for kind in SSE_CLIENTS:
                    for variant in ("off", "record") if r % 2 == 0 else ("record", "off"):
                        session = None
                        if variant == "record":
                            cassettes = workdir / f"sse-{kind}-{r}"
                            ini = {"promptcache_state_dir": str(workdir / "sse-state")}
                            settings = build_settings(
                                rootdir=workdir, cli_mode="record", cli_dir=str(cassettes), env={}, ini=ini
                            )
                            session = CacheSession(settings, env={})
                            install(session)
                        try:
                            started = time.perf_counter()
                            size = _read_sse(kind, client, sdk, base, r)
                            if r > 0:
                                times[kind][variant].append(time.perf_counter() - started)
                        finally:
                            if session is not None:
                                uninstall(session)
                        assert size >= megabytes * 1024 * 1024
                        if session is not None:
                            (saved,) = cassettes.glob("*.json")  # one recording: the stream was recorded
                            assert SSE_KEY not in saved.read_text(), "the API key reached the recording"
    finally:
        server.kill()
        server.wait(timeout=30)
    rows = {kind: _sse_row(times[kind], megabytes) for kind in SSE_CLIENTS}
    for kind, row in rows.items():
        log(
            f"    a {megabytes} MB SSE event in {_BigEvent.chunk} B chunks, read {kind}: "
            f"plugin off {row['off_s'] * 1000:.0f} ms, "
            f"recording {row['record_s'] * 1000:.0f} ms ({row['ratio']:.2f}x, "
            f"+{row['added_ms_per_mb']:.1f} ms per MB)"
        )
    return {
        "megabytes": megabytes,
        "chunk_bytes": _BigEvent.chunk,
        "server": "a process of its own",
        "clients": rows,
    }


def _sse_row(times: dict[str, list[float]], megabytes: int) -> dict[str, Any]:
    pairs = list(zip(times["record"], times["off"], strict=True))
    return {
        "off_s": statistics.median(times["off"]),
        "record_s": statistics.median(times["record"]),
        "ratio": statistics.median(rec / off for rec, off in pairs),
        "added_ms_per_mb": statistics.median((rec - off) * 1000 / megabytes for rec, off in pairs),
        "rounds": times,
    }


# -- main ---------------------------------------------------------------------------------------------------

SECTIONS = ("long", "scale", "huge", "sse")


def run(quick: bool, sections: set[str], log: Any) -> dict[str, Any]:
    results: dict[str, Any] = {"mode": "quick" if quick else "full"}
    workdir = Path(tempfile.mkdtemp(prefix="promptcache-bounds-"))
    try:
        if "long" in sections:
            log("a miss between two long prompts, one word apart")
            results["long"] = long_prompts(8_000 if quick else 32_000, workdir, log)
        if "scale" in sections:
            log("a miss at scale (fresh process per session)")
            results["scale"] = scale(
                [1_000, 10_000] if quick else [10_000, 100_000], workdir, 3 if quick else 5, log
            )
        if "huge" in sections:
            log("a miss with a huge prompt against similar huge recordings")
            results["huge"] = huge(8_000 if quick else 32_000, 16, workdir, log)
        if "sse" in sections:
            log("recording one huge SSE event")
            results["sse"] = sse(2 if quick else 10, 3 if quick else 5, workdir, log)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return results


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--worker"]:
        worker(*argv[1:4])
        return 0
    if argv[:1] == ["--serve-sse"]:
        serve_big_event(int(argv[1]))
        return 0
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="smaller stores and prompts, ~1 minute")
    parser.add_argument("--sections", default=",".join(SECTIONS), help=f"a subset of {','.join(SECTIONS)}")
    parser.add_argument("--json", type=Path, default=HERE / "bounds.json", help="where to write the numbers")
    args = parser.parse_args(argv)
    started = time.perf_counter()

    def log(text: str) -> None:
        print(f"[{time.perf_counter() - started:6.1f}s] {text}", flush=True)

    results = run(args.quick, {s.strip() for s in args.sections.split(",")}, log)
    args.json.write_text(json.dumps(results, indent=2) + "\n")
    log(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
