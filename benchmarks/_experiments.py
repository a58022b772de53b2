"""Where the time goes: the miss path, one warm replay step by step, and what a session's memory holds.

Nothing here edits ``pytest_promptcache``; it drives the core and looks at it from outside.
"""

from __future__ import annotations

import json
import time
import timeit
from pathlib import Path
from typing import Any

import _data
import _replay


def miss_times(store_dir: Path, workdir: Path, base_url: str, size: int, misses: int = 2) -> dict[str, Any]:
    """Seconds for the first miss of a session (reads every recording's request) and the next ones
    (the requests are cached; the nearest-recording search runs again), through raw httpx2."""
    import httpx2

    tool = _replay.PluginTool(store_dir, workdir)
    client = httpx2.Client()
    url = f"{base_url}/chat/completions"
    headers = {"content-type": "application/json"}
    times: list[float] = []
    message = ""
    with tool.active():
        for m in range(misses):
            body = json.dumps(_data.request_body(size + 1000 + m)).encode()
            started = time.perf_counter()
            response = client.post(url, content=body, headers=headers)
            times.append(time.perf_counter() - started)
            assert response.status_code == 404, response.status_code
            problems = tool.problems()
            assert problems, "a miss must fail its test"
            message = problems[0]
    client.close()
    nearest_line = next((line.strip() for line in message.splitlines() if "nearest:" in line), "")
    return {
        "size": size,
        "first_miss_s": times[0],
        "next_miss_s": times[1:],
        "nearest": nearest_line,
    }


# -- helpers ---------------------------------------------------------------------------------------


def handler_module() -> Any:
    """The module whose ``raw_request`` the patched transport methods call."""
    import importlib

    return importlib.import_module("pytest_promptcache.clients.httpx_send")


def httpx2_flavor() -> Any:
    import httpx2

    return handler_module().flavor_of(httpx2)


# -- where one replayed call's time goes ----------------------------------------------------------------


def replay_breakdown(store_dir: Path, workdir: Path, base_url: str, number: int = 20000) -> dict[str, float]:
    """Microseconds per step of one warm replay through httpx2 (best of 5 timeit runs each)."""
    import httpx2

    from pytest_promptcache.keys import display_url
    from pytest_promptcache.streams import Replay

    tool = _replay.PluginTool(store_dir, workdir)
    engine = tool.engine
    client = httpx2.Client()
    body = json.dumps(_data.request_body(5)).encode()
    headers = {"content-type": "application/json", "authorization": f"Bearer {_data.API_KEY}"}
    request = client.build_request("POST", f"{base_url}/chat/completions", content=body, headers=headers)
    request.read()
    module = handler_module()
    flavor = httpx2_flavor()
    raw = module.raw_request(request, request.read())
    replay = engine.start(raw)
    assert isinstance(replay, Replay), f"expected a replay, got {replay!r}"
    key, _ = engine.keyer.key_for(raw)
    chunk = replay.chunks[0]

    def best(fn: Any) -> float:
        return min(timeit.repeat(fn, number=number, repeat=5)) / number * 1e6

    out: dict[str, float] = {}
    out |= {
        "session.handles (endpoint match)": best(
            lambda: tool.session.handles(request.url.host, request.url.path)
        ),
        "raw_request (total)": best(lambda: module.raw_request(request, request.read())),
        "  request.headers.multi_items()": best(request.headers.multi_items),
        "  request.url.params.multi_items()": best(request.url.params.multi_items),
        "engine.start (total, warm)": best(lambda: engine.start(raw)),
        "  scrubber.learn(headers)": best(lambda: engine.scrubber.learn(raw.headers)),
        "  display_url": best(lambda: display_url(raw, engine.scrubber)),
        "  keyer.key_for (memo hit)": best(lambda: engine.keyer.key_for(raw)),
        "  store.get (memory tier)": best(lambda: engine.store.get(key)),
        "flavor.response (Response + replay stream)": best(lambda: flavor.response(replay, request)),
        "floor: Response + ByteStream (for comparison)": best(
            lambda: httpx2.Response(replay.status, headers=replay.headers, stream=httpx2.ByteStream(chunk))
        ),
    }
    client.close()
    return out


def retained_memory(store_dir: Path, workdir: Path, base_url: str, size: int, served: int) -> dict[str, Any]:
    """Serve ``served`` different recordings once each, then see what holds the memory: tracemalloc's
    current size, then after dropping the session's call events, then after emptying the bounded
    memory tier and key memo too. Run in a fresh process (see ``_memory_worker``) or standalone."""
    import gc
    import tracemalloc

    import httpx2

    tool = _replay.PluginTool(store_dir, workdir)
    engine = tool.engine
    client = httpx2.Client()
    url = f"{base_url}/chat/completions"
    headers = {"content-type": "application/json"}
    bodies = [json.dumps(_data.request_body(i)).encode() for i in _data.spread(size, served)]
    tracemalloc.start()
    with tool.active():
        for body in bodies:
            client.post(url, content=body, headers=headers)
    assert not tool.problems()
    gc.collect()
    total = tracemalloc.get_traced_memory()[0]
    events = len(engine.ledger.events)
    engine.ledger.events.clear()
    tool.session.context.calls.clear()
    gc.collect()
    without_events = tracemalloc.get_traced_memory()[0]
    engine.store._memory.clear()
    engine.keyer._memo.clear()
    gc.collect()
    without_caches = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    client.close()
    mib = 1024 * 1024
    return {
        "size": size,
        "served": served,
        "events": events,
        "memory_tier_size": engine.settings.memory_size,
        "traced_mib": total / mib,
        "held_by_call_events_mib": (total - without_events) / mib,
        "held_by_memory_tier_and_key_memo_mib": (without_events - without_caches) / mib,
        "rest_mib": without_caches / mib,
    }
