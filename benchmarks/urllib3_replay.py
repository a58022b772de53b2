"""Replay cost through urllib3 and requests, over each library's own mocking floor, at 10 to 100,000
recordings.

    python benchmarks/urllib3_replay.py            # ~2 minutes on 2 cores
    python benchmarks/urllib3_replay.py --quick    # sizes 10 and 1,000, fewer rounds

Templates (a JSON chat completion and a streamed one) are recorded for real through requests against the
loopback fake provider (``tests/llm_server.py``); every other recording is a template with its marker
replaced (``_data.write_plugin_store``), so each file is what the plugin would have written.

Variants, called the same way with the same request bytes, answering with the same recorded bytes:
- ``floor``, requests: ``responses`` (its ``RequestsMock`` with a callback that returns the recorded
  status, headers and body), requests' own mocking library;
- ``floor``, raw urllib3: a ``PoolManager`` whose pools' ``urlopen`` returns an ``HTTPResponse`` over the
  recorded bytes, built as urllib3 builds one (what ``responses`` does below requests);
- ``promptcache``: the same client unmocked, the plugin installed in replay mode (warm: the recordings
  served are in its memory tier, as they are from a suite's second call on).
Rounds alternate the variants in rotating order; the difference and the ratio are medians of per-round
pairs, all measured in one run. Time is the CPU time of the calling thread (``time.thread_time_ns``), so
that other processes on a shared machine do not count against either variant; wall time is printed and
kept beside it.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import gc
import io
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _data

TARGET_US = 30.0


class Index:
    """The floor answers the request the caller is about to send: every variant sets this."""

    value = 0


def record_templates(workdir: Path) -> tuple[str, _data.Templates]:
    import requests

    from pytest_promptcache.clients import install, uninstall
    from pytest_promptcache.keys import canonical_json
    from pytest_promptcache.session import CacheSession
    from pytest_promptcache.settings import build_settings
    from pytest_promptcache.store.files import read_recording

    store = workdir / "template"
    with _data.import_fake_provider()() as server:
        base_url = server.url
        url = f"{base_url}/v1/chat/completions"
        session = CacheSession(
            build_settings(rootdir=workdir, cli_mode="record", cli_dir=str(store), env={}, ini={}), env={}
        )
        install(session)
        try:
            body: dict[str, Any] = {"messages": _data.messages(_data.MARKER), "model": _data.MODEL}
            assert _data.MARKER in requests.post(url, json=body, timeout=10).text
            with requests.post(url, json={**body, "stream": True}, stream=True, timeout=10) as reply:
                assert _data.MARKER.encode() in b"".join(list(reply.iter_lines()))
        finally:
            uninstall(session)
    files, canonical, keys = {}, {}, {}
    for path in sorted(store.glob("*.json")):
        recording = read_recording(path)
        stream = recording.response.events is not None
        files[stream] = path.read_text(encoding="utf-8")
        canonical[stream] = canonical_json(recording.request)
        keys[stream] = recording.key
    assert set(files) == {False, True}, "expected a JSON and a streamed template recording"
    return url, _data.Templates(base_url, files, canonical, keys, vcr_interaction={})


def request_bytes(index: int, *, stream: bool) -> bytes:
    return json.dumps(_data.request_body(index, stream=stream)).encode()


HEADERS = {"content-type": "application/json", "authorization": f"Bearer {_data.API_KEY}"}


# -- the clients -------------------------------------------------------------------------------------------


def requests_call(url: str, bodies: dict[int, bytes], *, stream: bool) -> tuple[Callable[[int], int], Any]:
    import requests

    session = requests.Session()
    post = session.post
    if stream:

        def call(i: int) -> int:
            Index.value = i
            with post(url, data=bodies[i], headers=HEADERS, stream=True) as reply:
                return sum(len(line) for line in reply.iter_lines())

    else:

        def call(i: int) -> int:
            Index.value = i
            return len(post(url, data=bodies[i], headers=HEADERS).json()["choices"])

    return call, session


def urllib3_call(url: str, bodies: dict[int, bytes], *, stream: bool, manager: Any) -> Callable[[int], int]:
    request = manager.request
    if stream:

        def call(i: int) -> int:
            Index.value = i
            reply = request("POST", url, body=bodies[i], headers=HEADERS, preload_content=False)
            size = sum(len(chunk) for chunk in reply.stream())
            reply.release_conn()
            return size

    else:

        def call(i: int) -> int:
            Index.value = i
            return len(request("POST", url, body=bodies[i], headers=HEADERS).json()["choices"])

    return call


# status, headers, body
Answer = tuple[int, Sequence[tuple[str, str]], bytes]


def floor_pool_manager(answers: Mapping[int, Answer]) -> Any:
    import urllib3
    from urllib3.response import HTTPResponse

    class FloorPool(urllib3.HTTPConnectionPool):
        def urlopen(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
            status, headers, body = answers[Index.value]
            return HTTPResponse(
                body=io.BytesIO(body),
                headers=dict(headers),
                status=status,
                preload_content=kwargs.get("preload_content", True),
                decode_content=kwargs.get("decode_content", True),
                request_method=method,
                request_url=url,
            )

    manager = urllib3.PoolManager()
    manager.pool_classes_by_scheme = {"http": FloorPool, "https": FloorPool}
    return manager


@contextlib.contextmanager
def responses_floor(
    url: str, answers: Mapping[int, tuple[int, Sequence[tuple[str, str]], bytes]]
) -> Iterator[None]:
    import responses

    def callback(request: Any) -> tuple[int, dict[str, str], bytes]:
        status, headers, body = answers[Index.value]
        return status, dict(headers), body

    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.add_callback(responses.POST, url, callback=callback)
        yield


# -- timing --------------------------------------------------------------------------------------------


def batch_us(call: Callable[[int], int], indices: list[int], n: int) -> tuple[float, float]:
    """Microseconds per call: CPU time of this thread, and wall time."""
    gc.collect()
    wall, cpu = time.perf_counter_ns(), time.thread_time_ns()
    for j in range(n):
        call(indices[j % len(indices)])
    cpu, wall = time.thread_time_ns() - cpu, time.perf_counter_ns() - wall
    return cpu / n / 1000, wall / n / 1000


Variants = dict[str, tuple[Callable[[int], int], Callable[[], contextlib.AbstractContextManager[None]]]]


def measure(
    variants: Variants,
    indices: list[int],
    rounds: int,
    n: int,
) -> dict[str, list[float]]:
    names = list(variants)
    times: dict[str, list[float]] = {name: [] for name in names}
    walls: dict[str, list[float]] = {name: [] for name in names}
    for name in names:  # warm up: first serves, imports, the memory tier
        call, context = variants[name]
        with context():
            batch_us(call, indices, len(indices) * 2)
    for r in range(rounds):
        for k in range(len(names)):
            name = names[(r + k) % len(names)]
            call, context = variants[name]
            with context():
                cpu, wall = batch_us(call, indices, n)
            times[name].append(cpu)
            walls[f"{name}"].append(wall)
    return {**times, **{f"{name}_wall": walls[name] for name in names}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", type=Path, help="also write every round here")
    args = parser.parse_args()
    sizes = [10, 1_000] if args.quick else [10, 1_000, 100_000]
    rounds, n = (7, 200) if args.quick else (15, 400)

    import urllib3

    from pytest_promptcache.clients import install, uninstall
    from pytest_promptcache.session import CacheSession
    from pytest_promptcache.settings import build_settings

    results: list[dict[str, Any]] = []
    # The machine may be shared: CPU time of this thread is the measure; wall time is printed beside it.
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="promptcache-urllib3-bench-") as tmp:
        workdir = Path(tmp)
        url, templates = record_templates(workdir)
        for size in sizes:
            store = workdir / f"store-{size}"
            _data.write_plugin_store(store, templates, size, streams=10)
            settings = build_settings(rootdir=workdir, cli_mode="replay", cli_dir=str(store), env={}, ini={})
            session = CacheSession(settings, env={})
            engine = session.engine()

            @contextlib.contextmanager
            def plugin(session: CacheSession = session) -> Iterator[None]:
                install(session)
                try:
                    yield
                finally:
                    uninstall(session)

            for stream in (False, True):
                hot = _data.spread(size if not stream else 10, 10)
                bodies = {i: request_bytes(i, stream=stream) for i in hot}
                answers = {}
                for i in hot:
                    stored = engine.store.get(_data.plugin_key_of(templates, i, stream=stream))
                    assert stored is not None, f"recording {i} missing"
                    replay = stored.replay
                    answers[i] = (replay.status, replay.headers, b"".join(replay.chunks))
                kind = "stream" if stream else "JSON"
                req_call, req_session = requests_call(url, bodies, stream=stream)
                u3_plugin = urllib3_call(url, bodies, stream=stream, manager=urllib3.PoolManager())
                u3_floor = urllib3_call(url, bodies, stream=stream, manager=floor_pool_manager(answers))
                cells: dict[str, Variants] = {
                    f"requests, {kind}": {
                        "floor": (req_call, functools.partial(responses_floor, url, answers)),
                        "promptcache": (req_call, plugin),
                    },
                    f"urllib3, {kind}": {
                        "floor": (u3_floor, contextlib.nullcontext),
                        "promptcache": (u3_plugin, plugin),
                    },
                }
                for label, variants in cells.items():
                    times = measure(variants, hot, rounds, n)
                    problems = session.context.take_problems()
                    assert not problems, problems
                    row: dict[str, Any] = {"path": label, "size": size}
                    for clock, suffix in (("cpu", ""), ("wall", "_wall")):
                        floor, ours = times[f"floor{suffix}"], times[f"promptcache{suffix}"]
                        pairs = list(zip(floor, ours, strict=True))
                        row[clock] = {
                            "floor_us": statistics.median(floor),
                            "promptcache_us": statistics.median(ours),
                            "over_floor_us": statistics.median(b - a for a, b in pairs),
                            "ratio": statistics.median(b / a for a, b in pairs),
                            "floor_rounds_us": floor,
                            "promptcache_rounds_us": ours,
                        }
                    results.append(row)
                    cpu, wall = row["cpu"], row["wall"]
                    print(
                        f"{label:<18} {size:>7,} recordings: CPU floor {cpu['floor_us']:6.1f} µs, "
                        f"promptcache {cpu['promptcache_us']:6.1f} µs, {cpu['over_floor_us']:+.1f} µs "
                        f"({cpu['ratio']:.3f}x) | wall {wall['floor_us']:6.1f} -> "
                        f"{wall['promptcache_us']:6.1f} µs, {wall['over_floor_us']:+.1f} µs",
                        flush=True,
                    )
                req_session.close()

    counts = " / ".join(f"{s:,}" for s in sizes)
    print(f"\n| path | floor (10 recordings) | added over the floor at {counts} recordings | target met |")
    print("|---|---|---|---|")
    for label in dict.fromkeys(r["path"] for r in results):
        rows = [r for r in results if r["path"] == label]
        over = " / ".join(f"{r['cpu']['over_floor_us']:+.1f}" for r in rows)
        wall = " / ".join(f"{r['wall']['over_floor_us']:+.1f}" for r in rows)
        met = "yes" if all(r["cpu"]["over_floor_us"] <= TARGET_US for r in rows) else "**no**"
        print(f"| {label} | {rows[0]['cpu']['floor_us']:.0f} µs | CPU {over} µs (wall {wall}) | {met} |")
    print(f"load average (1, 5, 15 min) at the start: {load_before}, at the end: {os.getloadavg()}")
    if args.json:
        from importlib import metadata

        machine = _data.machine()
        for dist in ("urllib3", "requests", "responses"):
            machine["versions"][dist] = metadata.version(dist)
        machine["load_average"] = {"start": load_before, "end": os.getloadavg()}
        args.json.write_text(json.dumps({"machine": machine, "results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
