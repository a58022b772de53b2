"""Replay through ``promptcache serve``'s proxy against a direct loopback call to a canned server.

    python benchmarks/proxy.py            # ~3 minutes on 2 cores (stores of 10, 1,000 and 100,000)
    python benchmarks/proxy.py --quick    # ~30 s, stores of 10 and 1,000

Target: replay through the proxy adds at most 1 ms per call over the same client calling a canned
server directly. Both servers run in one child process (as the proxy runs in a pytest process, apart
from its clients), on loopback, HTTP/1.1 with keep-alive:

- ``canned``: the standard library's ``ThreadingHTTPServer`` (the proxy's own server class, so parsing
  a request costs both the same), answering each request with the very status, headers and bytes the
  proxy replays for it, looked up by its body: one event per write for a stream, as the proxy writes it.
- ``proxy``: ``ProxyServer`` in replay mode over a store of N recordings, its upstream the address the
  recordings were made against (nothing is listening there: replay never connects).

Clients, in this process: ``http.client`` on one kept connection (a client with its own socket code: what
the proxy adds shows plainly) and the openai SDK (3.x, on httpx2; the SDK's own cost is most of a call),
JSON and streamed, the stream read to its end. The recordings are ``_data``'s: recorded for real through
the openai SDK against ``tests/llm_server.py``, multiplied to N. Warm: a hot set of 10 requests, each
served once before timing. Rounds interleave the variants in rotating order; the difference reported is
the median of per-round differences, so both sides of it come from the same moments of a shared machine.
Writes ``benchmarks/proxy.json``.
"""

from __future__ import annotations

import argparse
import gc
import http.client
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
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import _data  # noqa: E402

TARGET_US = 1000.0
HOT = 10
CANNED, PROXY = "canned", "proxy"


@dataclass(frozen=True)
class Config:
    rounds: int
    batch_seconds: float
    sizes: tuple[int, ...]


FULL = Config(rounds=15, batch_seconds=0.25, sizes=(10, 1000, 100_000))
QUICK = Config(rounds=5, batch_seconds=0.1, sizes=(10, 1000))


# -- the child: both servers ----------------------------------------------------------------------------


def _response_bytes(replay: Any) -> list[bytes]:
    """What the proxy writes for a replay (``handler._write_replay``), write by write."""
    from pytest_promptcache.proxy.wire import header_lines, status_line

    head = [status_line(replay.status), *header_lines(replay.headers)]
    if any(k.lower() == "content-length" for k, _ in replay.headers):
        return [b"".join([*head, b"\r\n", *replay.chunks])]
    first = b"".join([*head, b"transfer-encoding: chunked\r\n\r\n"])
    return [first, *(b"%x\r\n%s\r\n" % (len(c), c) for c in replay.chunks), b"0\r\n\r\n"]


def _canonical(body: bytes) -> str:
    return json.dumps(json.loads(body), sort_keys=True)


def serve(store: Path, base_url: str) -> None:
    """Start the canned server and the proxy, print their URLs, serve until stdin closes."""
    from pytest_promptcache.keys import RawRequest
    from pytest_promptcache.proxy.server import ProxyServer
    from pytest_promptcache.proxy.upstreams import parse_upstreams
    from pytest_promptcache.session import CacheSession
    from pytest_promptcache.settings import build_settings
    from pytest_promptcache.streams import Replay

    settings = build_settings(rootdir=store.parent, cli_mode="replay", cli_dir=str(store), env={}, ini={})
    upstreams = parse_upstreams([f"openai={base_url}"], "benchmark")
    upstream = upstreams["openai"]
    engine = CacheSession(settings, env={}).engine()
    # By the request's JSON (each client serializes it its own way), then by its bytes once seen.
    canned: dict[str | bytes, list[bytes]] = {}
    for stream in (False, True):
        for index in range(HOT):
            body = json.dumps(_data.request_body(index, stream=stream)).encode()
            raw = RawRequest(
                "POST", upstream.scheme, upstream.host, upstream.port, "/v1/chat/completions", (), (), body
            )
            replay = engine.start(raw)
            assert isinstance(replay, Replay), f"no recording for {index} (stream={stream})"
            canned[_canonical(body)] = _response_bytes(replay)

    class Canned(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True

        def do_GET(self) -> None:
            # Not timed: how much CPU this process (both servers) has used, for the CPU figures.
            data = str(time.process_time()).encode()
            self.wfile.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%s" % (len(data), data))

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["content-length"]))
            answer = canned.get(body)
            if answer is None:
                answer = canned[body] = canned[_canonical(body)]
            for piece in answer:
                self.wfile.write(piece)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    canned_server = ThreadingHTTPServer(("127.0.0.1", 0), Canned)
    canned_server.daemon_threads = True
    threading.Thread(target=canned_server.serve_forever, daemon=True).start()
    proxy = ProxyServer(CacheSession(settings, env={}), upstreams).start()
    canned_url = f"http://127.0.0.1:{canned_server.server_address[1]}/v1"
    urls = {CANNED: canned_url, PROXY: proxy.base_urls["openai"]}
    print(json.dumps(urls), flush=True)
    sys.stdin.read()
    proxy.stop()
    canned_server.shutdown()


# -- the clients ----------------------------------------------------------------------------------------


Call = Callable[[int], int]


def raw_client(base: str, stream: bool) -> Call:
    """One kept connection, the request written and the answer read by ``http.client``."""
    parts = base.split("/", 3)
    host, port = parts[2].split(":")
    path = "/" + parts[3] + "/chat/completions"
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    bodies = [json.dumps(_data.request_body(i, stream=stream)).encode() for i in range(HOT)]
    headers = {"content-type": "application/json", "authorization": f"Bearer {_data.API_KEY}"}

    def call(i: int) -> int:
        conn.request("POST", path, bodies[i], headers)
        reply = conn.getresponse()
        data = reply.read()
        assert reply.status == 200, data[:300]
        return len(data)

    return call


def sdk_client(base: str, stream: bool) -> Call:
    import openai

    client = openai.OpenAI(base_url=base, api_key=_data.API_KEY, max_retries=0)
    create = client.chat.completions.create

    def call(i: int) -> int:
        if stream:
            chunks = create(model=_data.MODEL, messages=_data.messages(i), stream=True)
            return len("".join(c.choices[0].delta.content or "" for c in chunks if c.choices))
        return len(create(model=_data.MODEL, messages=_data.messages(i)).choices[0].message.content or "")

    return call


class ServerClock:
    """The servers' process CPU time, asked of the canned server between batches."""

    def __init__(self, canned_base: str) -> None:
        host, port = canned_base.split("/")[2].split(":")
        self._conn = http.client.HTTPConnection(host, int(port), timeout=30)

    def __call__(self) -> float:
        self._conn.request("GET", "/cpu")
        return float(self._conn.getresponse().read())


def time_batch(call: Call, n: int, server_cpu: Callable[[], float]) -> tuple[float, float]:
    """Microseconds per call over ``n`` calls cycling through the hot set: wall time, and CPU time (the
    calling thread's and the servers' process's): what a call costs whoever else shares the machine."""
    gc.collect()
    server_before = server_cpu()
    cpu_started = time.thread_time_ns()
    started = time.perf_counter_ns()
    for j in range(n):
        call(j % HOT)
    wall = (time.perf_counter_ns() - started) / n / 1000
    client_cpu = (time.thread_time_ns() - cpu_started) / n / 1000
    return wall, client_cpu + (server_cpu() - server_before) * 1e6 / n


@dataclass
class Cell:
    client: str
    stream: bool
    size: int
    canned: list[float]  # wall µs per call, one per round
    proxy: list[float]
    canned_cpu: list[float]  # CPU µs per call (client thread + servers), one per round
    proxy_cpu: list[float]

    @property
    def added(self) -> float:
        return statistics.median(p - c for p, c in zip(self.proxy, self.canned, strict=True))

    @property
    def added_cpu(self) -> float:
        return statistics.median(p - c for p, c in zip(self.proxy_cpu, self.canned_cpu, strict=True))


def measure(urls: dict[str, str], size: int, config: Config) -> list[Cell]:
    cells: list[Cell] = []
    clock = ServerClock(urls[CANNED])
    for client_name, make in (("http.client", raw_client), ("openai SDK", sdk_client)):
        for stream in (False, True):
            calls = {variant: make(urls[variant], stream) for variant in (CANNED, PROXY)}
            for call in calls.values():  # warm: each recording served once, each connection open
                for i in range(HOT):
                    call(i)
            probe, _ = time_batch(calls[PROXY], HOT, clock)
            n = max(HOT, int(config.batch_seconds * 1e6 / probe))
            wall: dict[str, list[float]] = {CANNED: [], PROXY: []}
            cpu: dict[str, list[float]] = {CANNED: [], PROXY: []}
            for r in range(config.rounds):
                order = (CANNED, PROXY) if r % 2 == 0 else (PROXY, CANNED)
                for variant in order:
                    took, used = time_batch(calls[variant], n, clock)
                    wall[variant].append(took)
                    cpu[variant].append(used)
            cell = Cell(client_name, stream, size, wall[CANNED], wall[PROXY], cpu[CANNED], cpu[PROXY])
            cells.append(cell)
            kind = "stream" if stream else "JSON"
            print(
                f"  {size:>7,} recordings  {client_name:<11} {kind:<6}  wall: canned "
                f"{statistics.median(cell.canned):8.1f}  proxy {statistics.median(cell.proxy):8.1f}  added "
                f"{cell.added:+7.1f} µs;  CPU: canned {statistics.median(cell.canned_cpu):8.1f}  proxy "
                f"{statistics.median(cell.proxy_cpu):8.1f}  added {cell.added_cpu:+7.1f} µs",
                flush=True,
            )
    return cells


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--serve", nargs=2, metavar=("STORE", "BASE_URL"), help=argparse.SUPPRESS)
    parser.add_argument("--out", default=str(HERE / "proxy.json"))
    args = parser.parse_args(argv)
    if args.serve:
        serve(Path(args.serve[0]), args.serve[1])
        return 0
    config = QUICK if args.quick else FULL
    load_before = os.getloadavg()
    workdir = Path(tempfile.mkdtemp(prefix="promptcache-proxy-bench-"))
    cells: list[Cell] = []
    try:
        templates = _data.record_templates(workdir)
        for size in config.sizes:
            store = workdir / f"store-{size}"
            _data.write_plugin_store(store, templates, size, streams=HOT)
            child = subprocess.Popen(
                [sys.executable, __file__, "--serve", str(store), templates.base_url],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            assert child.stdout is not None
            assert child.stdin is not None
            try:
                urls = json.loads(child.stdout.readline())
                cells += measure(urls, size, config)
            finally:
                child.stdin.close()
                child.wait(timeout=60)
            shutil.rmtree(store)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    worst = max(cell.added for cell in cells)
    worst_cpu = max(cell.added_cpu for cell in cells)
    result = {
        "target_us": TARGET_US,
        "met": worst <= TARGET_US,
        "worst_added_us": round(worst, 1),
        "worst_added_cpu_us": round(worst_cpu, 1),
        "load_average": {"before": load_before, "after": os.getloadavg()},
        "machine": _data.machine(),
        "config": config.__dict__,
        "cells": [
            {
                "client": c.client,
                "stream": c.stream,
                "recordings": c.size,
                "canned_us": round(statistics.median(c.canned), 1),
                "proxy_us": round(statistics.median(c.proxy), 1),
                "added_us": round(c.added, 1),
                "canned_cpu_us": round(statistics.median(c.canned_cpu), 1),
                "proxy_cpu_us": round(statistics.median(c.proxy_cpu), 1),
                "added_cpu_us": round(c.added_cpu, 1),
                "rounds": {
                    "canned": c.canned,
                    "proxy": c.proxy,
                    "canned_cpu": c.canned_cpu,
                    "proxy_cpu": c.proxy_cpu,
                },
            }
            for c in cells
        ],
    }
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    verdict = "met" if result["met"] else "NOT met"
    target = f"target {TARGET_US:.0f} µs"
    print(f"replay through the proxy adds at most {worst:.1f} µs per call ({target}): {verdict}")
    print(f"in CPU time (the client's thread and the servers' process): at most {worst_cpu:+.1f} µs per call")
    print(f"load average {load_before[0]:.1f} before, {os.getloadavg()[0]:.1f} after; wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
