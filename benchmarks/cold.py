"""Cold and warm replay, per call and per whole pytest process: the floor, pytest-promptcache, cassetter.

    python benchmarks/cold.py            # 200 and 2,000 recordings, JSON and 50-event streams
    python benchmarks/cold.py --quick    # fewer rounds

Each measurement is a fresh ``python -m pytest`` process running one test that makes N distinct calls
through the openai SDK (on httpx2), then the same N again: the first pass is cold (every recording served
for the first time in the process), the second warm. Each call is timed with ``perf_counter_ns`` around
the SDK call only; the whole process is timed from outside (start-up, collection, the calls, the session
end and the interpreter's exit). The variants, in rotating order per round:

- **floor**: the SDK on a ``MockTransport`` whose handler returns the response, built at import time
  from the same function the recording server answers with (the server sends exactly its headers, no
  ``Server`` or ``Date`` of its own, so every variant serves the floor's response); no record/replay
  plugin loaded;
- **promptcache**: the plugin in replay mode over a store recorded live through it, its state directory
  kept from the warm-up run (as on a developer's machine, or in CI with the state directory cached):
  recordings are served from the served-form cache and keys recalled from the key memory;
- **promptcache-fresh**: the same with a new, empty state directory in every run (a first session ever,
  or CI without a cached state directory): every recording read from its file, every request keyed;
- **promptcache-checkout**: the state directory kept, the recordings a fresh copy in every run (CI with
  its state directory cached, on a fresh checkout: every file has a new inode and new times, its bytes
  unchanged), copied at least 2 s before the run as a checkout precedes a suite's tests;
- **cassetter** (0.16.1, Rust core): ``use_cassette(record_mode="none", match_on=[method, uri, body])``
  around the test's calls, over a cassette recorded live through it. Its pytest plugin and
  pytest-recording both claim ``--record-mode``, so it is not installed with the dev extra: install it
  with ``pip install --target DIR cassetter==0.16.1`` and pass ``--cassetter DIR`` (or have it
  importable); without it the variant is skipped.

Every variant sets the same module global before each call (the floor's handler reads it to pick the
answer), so that bookkeeping costs all alike. Ratios are medians of per-round ratios (interleaved).
Writes ``benchmarks/cold.json``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
MODEL = "gpt-4.1-mini"
API_KEY = "sk-proj-BENCHabcdefghijklmnopqrstuvwxyz0123456789"
STREAM_EVENTS = 50

# Shared by the recording server (in this process) and the test module (in each measured process).
APP = r'''
import json

MODEL = "gpt-4.1-mini"
SYSTEM = "You are a careful assistant. Answer in one short paragraph, citing the question's number."


def messages(i):
    question = f"Question {i}: what is {i} squared?"
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": question}]


def index_of(body):
    return int(body["messages"][1]["content"].split(":", 1)[0].split()[1])


def answer(i, stream, events):
    """(status, headers, body chunks) of the answer to question ``i``."""
    base = {"id": f"chatcmpl-{i}", "created": 1760000000, "model": MODEL, "system_fingerprint": "fp_1"}
    if not stream:
        body = {**base, "object": "chat.completion", "choices": [{"index": 0, "finish_reason": "stop",
                "message": {"role": "assistant",
                            "content": f"{i} squared is {i * i}, as asked in question {i}."}}],
                "usage": {"prompt_tokens": 31, "completion_tokens": 12, "total_tokens": 43}}
        data = json.dumps(body).encode()
        return 200, [("content-type", "application/json"), ("content-length", str(len(data)))], [data]
    chunk = {**base, "object": "chat.completion.chunk"}
    out = [{**chunk, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]}]
    out += [{**chunk, "choices": [{"index": 0, "delta": {"content": f" word{n}"}}]}
            for n in range(events - 3)]
    out.append({**chunk, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 31, "completion_tokens": events - 3, "total_tokens": 28 + events}})
    chunks = [b"data: " + json.dumps(c, separators=(",", ":")).encode() + b"\n\n" for c in out]
    chunks.append(b"data: [DONE]\n\n")
    return 200, [("content-type", "text/event-stream")], chunks
'''

TEST = r"""
import json, os, time

import httpx2
import openai

import bench_app

N = int(os.environ["BENCH_N"])
STREAM = os.environ["BENCH_STREAM"] == "1"
EVENTS = int(os.environ["BENCH_EVENTS"])
VARIANT = os.environ["BENCH_VARIANT"]
CURRENT = [0]
MESSAGES = [bench_app.messages(i) for i in range(N)]


def client_for():
    transport = None
    if VARIANT == "floor":
        answers = [bench_app.answer(i, STREAM, EVENTS) for i in range(N)]

        def handler(request):
            status, headers, chunks = answers[CURRENT[0]]
            content = iter(chunks) if STREAM else b"".join(chunks)
            return httpx2.Response(status, headers=headers, content=content)

        transport = httpx2.MockTransport(handler)
    kwargs = {} if transport is None else {"transport": transport}
    return openai.OpenAI(api_key=os.environ["BENCH_KEY"], base_url=os.environ["BENCH_URL"], max_retries=0,
                         http_client=openai.DefaultHttpx2Client(**kwargs))


def run_pass(create):
    times = []
    for i in range(N):
        t = time.perf_counter_ns()
        CURRENT[0] = i
        if STREAM:
            stream = create(model=bench_app.MODEL, messages=MESSAGES[i], stream=True)
            text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
            assert text.startswith(" word0"), text
        else:
            text = create(model=bench_app.MODEL, messages=MESSAGES[i]).choices[0].message.content
            assert text.startswith(f"{i} squared"), text
        times.append(time.perf_counter_ns() - t)
    return times


def test_calls():
    client = client_for()
    create = client.chat.completions.create
    if VARIANT.startswith("cassetter"):
        from cassetter import use_cassette

        mode = "all" if VARIANT == "cassetter-record" else "none"
        with use_cassette(os.environ["BENCH_CASSETTE"], record_mode=mode, match_on=["method", "uri", "body"]):
            passes = [run_pass(create)] if mode == "all" else [run_pass(create), run_pass(create)]
    else:
        passes = [run_pass(create)]
        if VARIANT != "promptcache-record":
            passes.append(run_pass(create))
    client.close()
    with open(os.environ["BENCH_OUT"], "w") as fh:
        json.dump(passes, fh)
"""


def _serve(events: int) -> tuple[ThreadingHTTPServer, str]:
    namespace: dict[str, Any] = {}
    exec(APP, namespace)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            return

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["content-length"])))
            status, headers, chunks = namespace["answer"](
                namespace["index_of"](body), bool(body.get("stream")), events
            )
            # Exactly the answer's headers, as the floor answers: send_response would add Server and
            # Date, two headers more than the floor's response, which cost the SDK ~8 us a call (its
            # header lookups, and cookie extraction building a message of every header) in every
            # variant but the floor.
            self.send_response_only(status)
            for name, value in headers:
                self.send_header(name, value)
            if not any(name == "content-length" for name, _ in headers):
                self.send_header("content-length", str(sum(len(c) for c in chunks)))
            self.end_headers()
            for chunk in chunks:
                self.wfile.write(chunk)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/v1"


class Project:
    """One pytest project per (size, stream): the test module, and the data each variant replays."""

    def __init__(self, root: Path, size: int, stream: bool, cassetter_path: str | None) -> None:
        self.root = root
        self.size = size
        self.stream = stream
        self.cassetter_path = cassetter_path
        root.mkdir(parents=True)
        (root / "bench_app.py").write_text(APP, encoding="utf-8")
        (root / "test_bench.py").write_text(TEST, encoding="utf-8")
        (root / "pytest.ini").write_text("[pytest]\n", encoding="utf-8")
        self.urls: dict[str, str] = {"floor": "http://127.0.0.1:9/v1"}
        self.runs = 0
        self.checked_out = 0.0

    def checkout(self) -> None:
        """A fresh copy of the recordings where the last one was: new inodes and times, the same bytes."""
        target = self.root / "checkout"
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(self.root / "store", target, copy_function=shutil.copy)
        self.checked_out = time.monotonic()

    def record(self) -> None:
        server, url = _serve(STREAM_EVENTS)
        try:
            for variant in ("promptcache", "promptcache-fresh", "promptcache-checkout"):
                self.urls[variant] = url
            self.run("promptcache-record", url=url)
            self.checkout()
            if self.cassetter_path is not None:
                self.urls["cassetter"] = url
                self.run("cassetter-record", url=url)
        finally:
            server.shutdown()

    def args(self, variant: str) -> list[str]:
        blocked = {"promptcache", "cassetter", "recording"}
        self.runs += 1
        if variant.startswith("promptcache"):
            blocked.discard("promptcache")
        elif variant.startswith("cassetter"):
            blocked.discard("cassetter")
        args = [f"-p no:{name}" for name in sorted(blocked)]
        if variant == "promptcache-record":
            args.append("--promptcache=record")
        if variant.startswith("promptcache"):
            store = "checkout" if variant == "promptcache-checkout" else "store"
            args.append(f"--promptcache-dir={self.root / store}")
            state = {"promptcache-fresh": f"state-{self.runs}", "promptcache-checkout": "state-checkout"}
            args.append(f"-o promptcache_state_dir={self.root / state.get(variant, 'state')}")
        return [part for arg in args for part in arg.split(" ", 1)]

    def run(self, variant: str, url: str | None = None) -> tuple[float, list[list[int]]]:
        out = self.root / f"{variant}.json"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST", "PROMPTCACHE", "COV_"))}
        env.update(
            BENCH_N=str(self.size),
            BENCH_STREAM="1" if self.stream else "0",
            BENCH_EVENTS=str(STREAM_EVENTS),
            BENCH_VARIANT=variant,
            BENCH_URL=url or self.urls[variant],
            BENCH_KEY=API_KEY,
            BENCH_OUT=str(out),
            BENCH_CASSETTE=str(self.root / "cassette.yaml"),
        )
        # Bytecode caches, as every suite has them after its first run (warm-up runs write them).
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        if variant.startswith("cassetter") and self.cassetter_path:
            env["PYTHONPATH"] = self.cassetter_path
        cmd = [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            *self.args(variant),
            "test_bench.py",
        ]
        if variant == "promptcache-checkout":
            # Not timed: files younger than 2 s are not trusted to show a change (served_cache.RACY_NS).
            time.sleep(max(0.0, self.checked_out + 2.1 - time.monotonic()))
        started = time.perf_counter()
        done = subprocess.run(
            cmd, cwd=self.root, env=env, capture_output=True, text=True, timeout=600, check=False
        )
        wall = time.perf_counter() - started
        if variant == "promptcache-checkout":
            self.checkout()  # the next run's, aging while the other variants run
        if done.returncode != 0:
            raise RuntimeError(f"{variant} failed:\n{done.stdout[-3000:]}\n{done.stderr[-2000:]}")
        return wall, json.loads(out.read_text(encoding="utf-8"))


def _cassetter_path(given: str | None) -> str | None:
    if given:
        return given
    return "" if importlib.util.find_spec("cassetter") is not None else None


def measure(project: Project, variants: list[str], rounds: int, log: Callable[[str], None]) -> dict[str, Any]:
    failed: dict[str, str] = {}
    for variant in list(variants):
        try:
            project.run(variant)  # warm-up: bytecode caches written, files in the page cache
        except RuntimeError as exc:
            if variant == "floor":
                raise
            # cassetter cannot load its own cassette of 2,000 such interactions (a YAML node budget).
            lines = str(exc).splitlines()
            reason = next((line[1:] for line in lines if line.startswith("E ") and "Error:" in line), "")
            failed[variant] = reason.strip()[:300]
            log(f"  {variant} failed at {project.size}: {failed[variant]}")
            variants = [v for v in variants if v != variant]
    rows: dict[str, dict[str, list[float]]] = {v: {} for v in variants}
    for r in range(rounds):
        order = variants[r % len(variants) :] + variants[: r % len(variants)]
        for variant in order:
            wall, passes = project.run(variant)
            cold, warm = passes
            row = rows[variant]
            row.setdefault("wall_s", []).append(wall)
            row.setdefault("first_call_us", []).append(cold[0] / 1000)
            # Per call: the mean of the pass (its total is what a suite pays), the first call apart.
            row.setdefault("cold_us", []).append(sum(cold[1:]) / len(cold[1:]) / 1000)
            row.setdefault("warm_us", []).append(sum(warm) / len(warm) / 1000)
    out: dict[str, Any] = {
        "size": project.size,
        "stream": project.stream,
        "failed": failed,
        "rounds": rows,
        "median": {},
    }
    for variant, row in rows.items():
        out["median"][variant] = {k: statistics.median(v) for k, v in row.items()}
    ratios: dict[str, dict[str, float]] = {}
    for variant in variants[1:]:
        ratios[variant] = {
            k: statistics.median(a / b for a, b in zip(rows[variant][k], rows["floor"][k], strict=True))
            for k in ("wall_s", "cold_us", "warm_us")
        }
        ratios[variant]["first_call_over_floor_ms"] = statistics.median(
            (a - b) / 1000
            for a, b in zip(rows[variant]["first_call_us"], rows["floor"]["first_call_us"], strict=True)
        )
    out["ratio_to_floor"] = ratios
    kind = "stream" if project.stream else "JSON"
    log(f"  {project.size:>5} {kind:<6} medians: " + json.dumps(out["median"]))
    log(f"  {project.size:>5} {kind:<6} ratios to the floor: " + json.dumps(ratios))
    return out


def run(quick: bool, cassetter: str | None, log: Callable[[str], None]) -> list[dict[str, Any]]:
    path = _cassetter_path(cassetter)
    variants = ["floor", "promptcache", "promptcache-fresh", "promptcache-checkout"]
    variants += ["cassetter"] if path is not None else []
    if path is None:
        log("  cassetter is not installed: its variant is skipped (see this module's docstring)")
    rounds = 3 if quick else 7
    cases = [(200, False), (2000, False), (200, True)]
    results = []
    with tempfile.TemporaryDirectory(prefix="promptcache-cold-") as tmp:
        for size, stream in cases:
            project = Project(Path(tmp) / f"{size}-{int(stream)}", size, stream, path)
            project.record()
            results.append(measure(project, variants, rounds, log))
    return results


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--cassetter", help="a directory holding cassetter (pip install --target DIR ...)")
    parser.add_argument("--json", type=Path, default=HERE / "cold.json")
    args = parser.parse_args()
    started = time.perf_counter()

    def log(text: str) -> None:
        print(f"[{time.perf_counter() - started:6.1f}s] {text}", flush=True)

    results = run(args.quick, args.cassetter, log)
    args.json.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    log(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
