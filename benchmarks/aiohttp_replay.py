"""Replay through aiohttp against aiohttp's own mocking floor, from 10 to 100,000 recordings.

    python benchmarks/aiohttp_replay.py            # ~2 minutes on 2 cores
    python benchmarks/aiohttp_replay.py --quick    # ~15 s, stores up to 1,000

Every call is a raw ``aiohttp.ClientSession.post`` of a chat completion's JSON body, its answer read
whole (``text()``) or, for the stream, chunk by chunk (``iter_any()``). Variants, on one event loop:

- ``aioresponses``: aioresponses (as a test that mocks aiohttp uses it) serving, through a callback, the
  very status, headers and bytes the plugin replays for that request. The target's floor.
- ``bare mock``: ``ClientSession._request`` replaced by a function that builds a ``ClientResponse`` from
  those bytes and nothing else: no argument copying, no call log, no matching. What serving a canned
  answer costs aiohttp at least; shown so the plugin's own cost is visible, not hidden by a slow floor.
- ``promptcache``: the plugin in replay mode, driven through its core as its pytest plugin drives it.

Recordings: the JSON and the streamed chat completion are recorded for real through the openai SDK (on
httpx2) against ``tests/llm_server.py`` and multiplied as ``benchmarks/run.py`` does (``_data.py``):
the recordings replayed here through aiohttp were made through another library. Warm cells repeat a
hot set of requests; first-serve cells build a fresh engine per pass and request each recording once
(key derivation, one file read, validation). Rounds interleave the variants in rotating order; the
differences reported are medians of per-round pairs, so all come from the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import _data  # noqa: E402
from _replay import PluginTool, replays_for  # noqa: E402

FLOOR, BARE, PLUGIN = "aioresponses", "bare mock", "promptcache"
TARGET_US = 30.0


@dataclass(frozen=True)
class Config:
    rounds: int
    batch_seconds: float
    sizes: tuple[int, ...]
    hot: int  # distinct requests in a warm cell
    cold_calls: int  # first serves per round
    cold_rounds: int


FULL = Config(rounds=15, batch_seconds=0.15, sizes=(10, 1000, 100_000), hot=10, cold_calls=100, cold_rounds=5)
QUICK = Config(rounds=5, batch_seconds=0.06, sizes=(10, 1000), hot=10, cold_calls=50, cold_rounds=3)


class Current:
    """Which request a call is about to send: the floors answer it without a lookup of their own."""

    index = 0


def _headers(replay: Any) -> dict[str, str]:
    return dict(replay.headers)


# -- the floors ----------------------------------------------------------------------------------------------


@contextlib.contextmanager
def aioresponses_floor(url: str, replays: dict[int, Any]) -> Iterator[None]:
    from aiohttp import ClientResponse
    from aioresponses import CallbackResult, aioresponses

    class Response(ClientResponse):
        # aioresponses 0.7.9 predates aiohttp 3.14, which hands every response its request's writer.
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs.setdefault("stream_writer", _NothingSent())
            super().__init__(*args, **kwargs)

    answers = {
        i: CallbackResult(
            status=r.status,
            body=b"".join(r.chunks),
            headers=_headers(r),
            content_type=_headers(r)["content-type"],
            response_class=Response,
        )
        for i, r in replays.items()
    }

    def answer(url: Any, **kwargs: Any) -> CallbackResult:
        return answers[Current.index]

    with aioresponses() as mock:
        mock.post(url, callback=answer, repeat=True)
        yield


class _NothingSent:
    output_size = 0


@contextlib.contextmanager
def bare_floor(replays: dict[int, Any]) -> Iterator[None]:
    """The least aiohttp needs to hand a canned answer to a client: a started ``ClientResponse``."""
    import aiohttp
    from aiohttp import ClientResponse, RequestInfo, StreamReader
    from aiohttp.helpers import TimerNoop
    from multidict import CIMultiDict, CIMultiDictProxy
    from yarl import URL

    class Protocol:
        connected = True

        def pause_reading(self) -> None:
            pass

        def resume_reading(self, resume_parser: bool = True) -> None:
            pass

    protocol = Protocol()
    original = aiohttp.ClientSession._request

    async def _request(session: Any, method: str, url: str, **kwargs: Any) -> ClientResponse:
        replay = replays[Current.index]
        target = URL(url)
        loop = asyncio.get_running_loop()
        response = ClientResponse(
            method,
            target,
            writer=None,
            continue100=None,
            timer=TimerNoop(),
            request_info=RequestInfo(target, method, CIMultiDictProxy(CIMultiDict()), target),
            traces=[],
            loop=loop,
            session=session,
            stream_writer=_NothingSent(),  # type: ignore[arg-type]
        )
        response.status = replay.status
        response.reason = "OK"
        response._headers = CIMultiDictProxy(CIMultiDict(replay.headers))
        content = StreamReader(protocol, 2**16, loop=loop)  # type: ignore[arg-type]
        for chunk in replay.chunks:
            content.feed_data(chunk)
        content.feed_eof()
        response.content = content
        return response

    setattr(aiohttp.ClientSession, "_request", _request)  # noqa: B010
    try:
        yield
    finally:
        setattr(aiohttp.ClientSession, "_request", original)  # noqa: B010


# -- calls ---------------------------------------------------------------------------------------------------


Call = Callable[[int], Awaitable[str]]


def make_call(session: Any, url: str, indices: list[int], *, stream: bool) -> Call:
    bodies = {i: json.dumps(_data.request_body(i, stream=stream)).encode() for i in indices}
    headers = {"content-type": "application/json", "authorization": f"Bearer {_data.API_KEY}"}
    post = session.post

    async def call(i: int) -> str:
        Current.index = i
        async with post(url, data=bodies[i], headers=headers) as r:
            if not stream:
                return str(await r.text())
            return "".join([chunk.decode() async for chunk in r.content.iter_any()])

    return call


async def time_batch(call: Call, indices: list[int], n: int) -> float:
    """Microseconds per call over ``n`` calls cycling through ``indices``."""
    k = len(indices)
    gc.collect()
    started = time.perf_counter_ns()
    for j in range(n):
        await call(indices[j % k])
    return (time.perf_counter_ns() - started) / n / 1000


@dataclass
class Cell:
    label: str
    size: int
    rounds: dict[str, list[float]] = field(default_factory=dict)

    def median(self, variant: str) -> float:
        return statistics.median(self.rounds[variant])

    def over(self, variant: str, base: str) -> float:
        pairs = zip(self.rounds[variant], self.rounds[base], strict=True)
        return statistics.median(a - b for a, b in pairs)


def check(text: str, index: int, who: str) -> None:
    if _data.tag(index) not in text:
        raise AssertionError(f"{who}: call {index} got {text[:200]!r}")


async def warm_cell(
    cfg: Config, url: str, session: Any, plugin: PluginTool, replays: dict[int, Any], stream: bool, size: int
) -> Cell:
    hot = list(replays)
    call = make_call(session, url, hot, stream=stream)
    contexts: dict[str, Callable[[], contextlib.AbstractContextManager[None]]] = {
        FLOOR: lambda: aioresponses_floor(url, replays),
        BARE: lambda: bare_floor(replays),
        PLUGIN: plugin.active,
    }
    calls: dict[str, int] = {}
    for name, context in contexts.items():
        with context():
            for i in hot:
                check(await call(i), i, name)
            probe = await time_batch(call, hot, 50)
        calls[name] = max(20, int(cfg.batch_seconds / (probe / 1e6)))
    assert not plugin.problems()
    cell = Cell("stream" if stream else "JSON", size, {name: [] for name in contexts})
    names = list(contexts)
    for r in range(cfg.rounds):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            with contexts[name]():
                cell.rounds[name].append(await time_batch(call, hot, calls[name]))
    assert not plugin.problems()
    return cell


PRELOADED_TEST = "tests/test_app.py::test_first_serves"


async def first_serve_cell(
    cfg: Config,
    url: str,
    session: Any,
    store: Path,
    workdir: Path,
    replays: dict[int, Any],
    size: int,
    *,
    preloaded: bool = False,
) -> Cell:
    """First serve of each recording: fresh engines, each recording requested once per engine, as many
    engines per round as make ``cold_calls`` calls (a 10-recording store is timed over as many first
    serves as a large one). ``preloaded``: by a test that served them in an earlier session, so each
    session preloads them before its first call, as the pytest plugin does after collection (not timed:
    it happens before the first test, and the process numbers of ``cold.py`` count it)."""
    indices = list(replays)
    call = make_call(session, url, indices, stream=False)
    state = None
    if preloaded:
        state = workdir / f"state-{size}"
        time.sleep(2.1)  # the files' times old enough for their served forms to be kept (served_cache)
        earlier = PluginTool(store, workdir, state)
        earlier.session.begin_test(PRELOADED_TEST)
        with earlier.active():
            await time_batch(call, indices, len(indices))
        earlier.session.end_test()
        earlier.session.close()
    engines = max(1, -(-cfg.cold_calls // len(indices)))
    cell = Cell("JSON, first serve" + (", preloaded" if preloaded else ""), size, {FLOOR: [], PLUGIN: []})
    for r in range(cfg.cold_rounds):
        for name in (FLOOR, PLUGIN) if r % 2 == 0 else (PLUGIN, FLOOR):
            total = 0.0
            for _ in range(engines):
                if name == FLOOR:
                    with aioresponses_floor(url, replays):
                        total += await time_batch(call, indices, len(indices))
                    continue
                tool = PluginTool(store, workdir, state)
                if preloaded:
                    if tool.session.preload([PRELOADED_TEST]) != len(indices):
                        raise AssertionError("the earlier session's recordings were not preloaded")
                    tool.session.begin_test(PRELOADED_TEST)
                with tool.active():
                    total += await time_batch(call, indices, len(indices))
                if tool.problems():
                    raise AssertionError(f"first serve failed: {tool.problems()[0][:300]}")
            cell.rounds[name].append(total / engines)
    return cell


async def measure(cfg: Config, workdir: Path, log: Callable[[str], None]) -> list[Cell]:
    import aiohttp

    log("recording the templates through the openai SDK against tests/llm_server.py ...")
    templates = _data.record_templates(workdir)
    url = templates.base_url + "/chat/completions"
    cells: list[Cell] = []
    async with aiohttp.ClientSession() as session:
        for size in cfg.sizes:
            store = workdir / f"store-{size}"
            _data.write_plugin_store(store, templates, size)
            plugin = PluginTool(store, workdir)
            hot = _data.spread(size, cfg.hot)
            for stream in (False, True):
                chosen = hot if not stream else list(range(min(10, cfg.hot)))
                replays = replays_for(store, templates, chosen, stream)
                cell = await warm_cell(cfg, url, session, plugin, replays, stream, size)
                log(report_line(cell))
                cells.append(cell)
            cold = replays_for(store, templates, _data.spread(size, cfg.cold_calls), False)
            for preloaded in (False, True):
                cell = await first_serve_cell(
                    cfg, url, session, store, workdir, cold, size, preloaded=preloaded
                )
                log(report_line(cell))
                cells.append(cell)
            shutil.rmtree(store)
    return cells


def report_line(cell: Cell) -> str:
    parts = [f"{name} {cell.median(name):8.1f} µs" for name in cell.rounds]
    extra = f"  promptcache - aioresponses {cell.over(PLUGIN, FLOOR):+8.1f} µs"
    if BARE in cell.rounds:
        extra += f", - bare mock {cell.over(PLUGIN, BARE):+7.1f} µs"
    return f"  {cell.label:<18} {cell.size:>7} recordings: " + "  ".join(parts) + extra


def table(cells: list[Cell]) -> str:
    lines = [
        "| calls | recordings | aioresponses | bare mock | promptcache | promptcache - aioresponses "
        "| promptcache - bare mock |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for c in cells:
        bare = f"{c.median(BARE):.0f} µs" if BARE in c.rounds else "n/a"
        over_bare = f"{c.over(PLUGIN, BARE):+.1f} µs" if BARE in c.rounds else "n/a"
        lines.append(
            f"| {c.label} | {c.size:,} | {c.median(FLOOR):.0f} µs | {bare} | {c.median(PLUGIN):.0f} µs "
            f"| {c.over(PLUGIN, FLOOR):+.1f} µs | {over_bare} |"
        )
    warm = [c for c in cells if BARE in c.rounds]
    first = [c for c in cells if BARE not in c.rounds]
    worst = max(c.over(PLUGIN, FLOOR) for c in warm)
    verdict = "met" if worst <= TARGET_US else "NOT met"
    lines += [
        "",
        f"Warm replay adds at most {TARGET_US:.0f} µs per call over aioresponses at every store size: "
        f"worst {worst:+.1f} µs, {verdict}.",
        "First serve (a fresh engine: key derivation, one file read and validation in a worker thread) "
        "over aioresponses: "
        + ", ".join(f"{c.over(PLUGIN, FLOOR):+.0f} µs" for c in first if "preloaded" not in c.label)
        + "; preloaded by a test that served them before (on the event loop): "
        + ", ".join(f"{c.over(PLUGIN, FLOOR):+.0f} µs" for c in first if "preloaded" in c.label)
        + ".",
    ]
    for label in dict.fromkeys(c.label for c in cells):
        row = [c for c in cells if c.label == label]
        span = " -> ".join(f"{c.median(PLUGIN):.0f}" for c in row)
        lines.append(f"promptcache, {label}, {row[0].size:,} -> {row[-1].size:,} recordings: {span} µs")
    return "\n".join(lines)


def _load() -> str:
    """The 1-minute load average: on a shared machine, what the other processes cost every variant."""
    path = Path("/proc/loadavg")
    return path.read_text().split()[0] if path.exists() else "unknown"


def _version(dist: str) -> str:
    from importlib import metadata

    return metadata.version(dist)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds, stores up to 1,000")
    args = parser.parse_args(argv)
    cfg = QUICK if args.quick else FULL
    before = _load()
    workdir = Path(tempfile.mkdtemp(prefix="promptcache-aiohttp-bench-"))
    try:
        cells = asyncio.run(measure(cfg, workdir, lambda line: print(line, flush=True)))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    machine = _data.machine()
    print()
    print(
        f"{machine['cpu']}, {machine['cores']} cores, CPython {machine['python']}, "
        f"aiohttp {_version('aiohttp')}, aioresponses {_version('aioresponses')}; "
        f"load average {before} at the start, {_load()} at the end"
    )
    print(table(cells))
    return 0


if __name__ == "__main__":
    sys.exit(main())
