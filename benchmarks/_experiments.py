"""Where the time goes, and proposed changes measured in-process.

Nothing here edits ``pytest_promptcache``: a proposed change is applied by replacing one function on the
imported module for the duration of one measurement, so the numbers say what the change would buy.
The same code is in the report (``RESULTS.md``) as the patch to apply.
"""

from __future__ import annotations

import contextlib
import heapq
import json
import time
import timeit
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import _data
import _replay

# -- proposed: the miss path --------------------------------------------------------------------------

NEAREST_SHORTLIST = 16


def fast_nearest(request: Any, candidates: Mapping[str, Any]) -> tuple[str, Any, float] | None:
    """Proposed ``miss.nearest``: the same answer, with difflib run on a shortlist only.

    ``difflib.SequenceMatcher.ratio`` (autojunk off) costs milliseconds per pair of prompt-sized texts,
    and the current code runs it on every recording of the endpoint. Ranking every candidate first by
    the Jaccard overlap of its words with the request's (microseconds each) and running difflib on the
    best ``NEAREST_SHORTLIST`` keeps the best match in practice.
    """
    from pytest_promptcache.miss import similarity, text_content

    words = frozenset(text_content(request).split())
    scored: list[tuple[tuple[bool, float], str, Any]] = []
    for key, other in candidates.items():
        if (other.method, other.host, other.path) != (request.method, request.host, request.path):
            continue
        other_words = frozenset(text_content(other).split())
        union = len(words | other_words)
        overlap = len(words & other_words) / union if union else 1.0
        scored.append(((other.model == request.model, overlap), key, other))
    best: tuple[tuple[bool, float], str, Any] | None = None
    for (same_model, _), key, other in heapq.nlargest(NEAREST_SHORTLIST, scored, key=lambda s: s[0]):
        rank = (same_model, similarity(request, other))
        if best is None or rank > best[0]:
            best = (rank, key, other)
    if best is None:
        return None
    return best[1], best[2], best[0][1]


def fast_all_requests(store: Any) -> dict[str, Any]:
    """Proposed ``CassetteStore.all_requests``: parse each file's JSON but validate only its request
    (and that its key is its name), not the whole recording with its response."""
    from pytest_promptcache.models import CanonicalRequest
    from pytest_promptcache.store import SUFFIX

    with store._lock:
        if store._requests is not None:
            return dict(store._requests)
    found: dict[str, Any] = {}
    for key in list(store.keys()):
        path = store.path_for(key)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if data.get("key") != path.name.removesuffix(SUFFIX):
                continue
            found[key] = CanonicalRequest.model_validate(data["request"])
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            continue
    with store._lock:
        store._requests = found
    return dict(found)


@contextlib.contextmanager
def proposed_miss_path(tool: _replay.PluginTool) -> Iterator[None]:
    """Apply both proposed miss-path changes to one engine (and the engine module's ``nearest``)."""
    import types

    from pytest_promptcache import engine as engine_module

    original = engine_module.nearest  # type: ignore[attr-defined]
    engine_module.nearest = fast_nearest  # type: ignore[attr-defined]
    store = tool.engine.store
    store.all_requests = types.MethodType(fast_all_requests, store)  # type: ignore[method-assign]
    try:
        yield
    finally:
        engine_module.nearest = original  # type: ignore[attr-defined]
        del store.all_requests


def miss_times(
    store_dir: Path, workdir: Path, base_url: str, size: int, *, proposed: bool, misses: int = 2
) -> dict[str, Any]:
    """Seconds for the first miss of a session (reads every recording's request) and the next ones
    (the requests are cached; the nearest-recording search runs again), through raw httpx2."""
    import httpx2

    tool = _replay.PluginTool(store_dir, workdir)
    client = httpx2.Client()
    url = f"{base_url}/chat/completions"
    headers = {"content-type": "application/json"}
    times: list[float] = []
    message = ""
    ctx = proposed_miss_path(tool) if proposed else contextlib.nullcontext()
    with ctx, tool.active():
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
        "proposed": proposed,
        "first_miss_s": times[0],
        "next_miss_s": times[1:],
        "nearest": nearest_line,
    }


# -- proposed: the per-call replay path ----------------------------------------------------------------


def proposed_raw_request(request: Any, body: bytes) -> Any:
    """Proposed ``intercept.raw_request``: the same RawRequest, built with the headers' encoding looked up
    once (``Headers.multi_items`` evaluates the ``encoding`` property twice per header) and no
    ``QueryParams`` parse for a URL without a query."""
    from pytest_promptcache.keys import RawRequest

    url = request.url
    headers = request.headers
    encoding = headers.encoding
    return RawRequest(
        method=request.method,
        scheme=url.scheme,
        host=url.host,
        port=url.port,
        path=url.path,
        query=tuple(url.params.multi_items()) if url.query else (),
        headers=tuple((k.lower().decode(encoding), v.decode(encoding)) for k, v in headers.raw),
        body=body,
    )


def proposed_learn(self: Any, headers: Any) -> None:
    """Proposed ``Scrubber.learn``: RawRequest header names are lowercase already, so no ``lower()``
    per header (an SDK sends ~17) to find the one or two credential headers."""
    from pytest_promptcache.scrub import MIN_SECRET_LENGTH, REDACTED

    new: dict[str, str] = {}
    for name, value in headers:
        if name not in self.secret_headers:
            continue
        value = value.strip()
        scheme, _, rest = value.partition(" ")
        if rest and scheme.lower() in ("bearer", "basic", "token"):
            value = rest.strip()
        if len(value) >= MIN_SECRET_LENGTH and value not in self._values:
            new[value] = REDACTED
    if new:
        with self._lock:
            self._values = {**self._values, **new}
            self._ordered = self._order(self._values)


@contextlib.contextmanager
def proposed_replay_path(tool: _replay.PluginTool) -> Iterator[None]:
    """The plugin installed, with the proposed ``raw_request`` and ``learn`` swapped in."""
    import types

    from pytest_promptcache import intercept

    original = intercept.raw_request
    intercept.raw_request = proposed_raw_request
    scrubber = tool.engine.scrubber
    scrubber.learn = types.MethodType(proposed_learn, scrubber)  # type: ignore[method-assign]
    try:
        with tool.active():
            yield
    finally:
        intercept.raw_request = original
        del scrubber.learn


def check_proposed_raw_request() -> None:
    """The proposed RawRequest equals the current one, for httpx and httpx2, with and without a query."""
    import httpx
    import httpx2

    from pytest_promptcache import intercept

    for module in (httpx, httpx2):
        client = module.Client()
        for url in ("http://h:1/v1/chat/completions", "https://h/v1/x:generateContent?key=abc&b=1&b=2"):
            request = client.build_request(
                "POST", url, content=b"{}", headers={"Authorization": "Bearer x", "X-Y": "é".encode()}
            )
            assert proposed_raw_request(request, b"{}") == intercept.raw_request(request, b"{}"), url
        client.close()


# -- where one replayed call's time goes ----------------------------------------------------------------


def replay_breakdown(store_dir: Path, workdir: Path, base_url: str, number: int = 20000) -> dict[str, float]:
    """Microseconds per step of one warm replay through httpx2 (best of 5 timeit runs each)."""
    import httpx2

    from pytest_promptcache import intercept
    from pytest_promptcache.keys import display_url
    from pytest_promptcache.streams import Replay

    tool = _replay.PluginTool(store_dir, workdir)
    engine = tool.engine
    client = httpx2.Client()
    body = json.dumps(_data.request_body(5)).encode()
    headers = {"content-type": "application/json", "authorization": f"Bearer {_data.API_KEY}"}
    request = client.build_request("POST", f"{base_url}/chat/completions", content=body, headers=headers)
    request.read()
    flavor = next(f for f in intercept.available_flavors() if f.name == "httpx2")
    raw = intercept.raw_request(request, request.read())
    replay = engine.start(raw)
    assert isinstance(replay, Replay), f"expected a replay, got {replay!r}"
    key, _ = engine.keyer.key_for(raw)
    chunk = replay.chunks[0]

    def best(fn: Any) -> float:
        return min(timeit.repeat(fn, number=number, repeat=5)) / number * 1e6

    out = {
        "engine.handles (endpoint match)": best(lambda: engine.handles(request.url.host, request.url.path)),
        "flavor.mocked_below (respx check)": best(flavor.mocked_below),
        "intercept.raw_request (total)": best(lambda: intercept.raw_request(request, request.read())),
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
