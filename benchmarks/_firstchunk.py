"""Recording a stream: how long until the first chunk reaches the client, with and without the plugin.

The fake provider spaces its SSE chunks ``chunk_delay`` apart (its first chunk goes out with the
head). Each call uses a prompt never sent before, so in ``record`` mode every call goes live through
the plugin's tee and is saved when the stream completes; the client reads every chunk, as an SDK
user does. Variants alternate call by call over the same keep-alive connection.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import _data

if TYPE_CHECKING:
    from openai.types.chat import ChatCompletionMessageParam

SHORT_PROMPT = "Ticket {marker}: where is my parcel?"
_counter = itertools.count(9_000_000)


def _messages() -> list[ChatCompletionMessageParam]:
    return [{"role": "user", "content": SHORT_PROMPT.format(marker=_data.tag(next(_counter)))}]


def measure(
    workdir: Path, rounds: int, chunk_delay: float, log: Callable[[str], None]
) -> list[dict[str, Any]]:
    import httpx2
    import openai

    from pytest_promptcache.clients import install, uninstall
    from pytest_promptcache.session import CacheSession
    from pytest_promptcache.settings import build_settings

    server_cls = _data.import_fake_provider()
    # The fake provider writes a stream's head and its first chunk separately; with Nagle's algorithm on,
    # the chunk waits for the client's delayed ACK (40 ms on Linux) on a reused connection, for both
    # variants alike. Real providers' front ends set TCP_NODELAY; so does this run, for its server only.
    sys.modules[server_cls.__module__]._Handler.disable_nagle_algorithm = True
    store = workdir / "firstchunk-cassettes"
    settings = build_settings(rootdir=workdir, cli_mode="record", cli_dir=str(store), env={}, ini={})
    engine = CacheSession(settings, env={})

    @contextlib.contextmanager
    def recording() -> Iterator[None]:
        install(engine)
        try:
            yield
        finally:
            uninstall(engine)

    variants: dict[str, Callable[[], contextlib.AbstractContextManager[None]]] = {
        "no plugin": contextlib.nullcontext,
        "promptcache record": recording,
    }
    results = []
    with server_cls(chunk_delay=chunk_delay) as server:
        base_url = f"{server.url}/v1"
        sdk = openai.OpenAI(api_key=_data.API_KEY, base_url=base_url, max_retries=0)
        raw = httpx2.Client(timeout=30)

        def sdk_call() -> tuple[float, float, int]:
            started = time.perf_counter()
            stream = sdk.chat.completions.create(model=_data.MODEL, messages=_messages(), stream=True)
            first = None
            count = 0
            for _chunk in stream:
                if first is None:
                    first = time.perf_counter()
                count += 1
            assert first is not None
            return first - started, time.perf_counter() - started, count

        def raw_call() -> tuple[float, float, int]:
            body = json.dumps({"messages": _messages(), "model": _data.MODEL, "stream": True})
            headers = {"content-type": "application/json", "authorization": f"Bearer {_data.API_KEY}"}
            started = time.perf_counter()
            first = None
            count = 0
            with raw.stream(
                "POST", f"{base_url}/chat/completions", content=body, headers=headers
            ) as response:
                for _chunk in response.iter_raw():
                    if first is None:
                        first = time.perf_counter()
                    count += 1
            assert first is not None
            return first - started, time.perf_counter() - started, count

        for label, call in (("openai SDK on httpx2", sdk_call), ("raw httpx2 stream", raw_call)):
            for make_context in variants.values():  # warm-up: connection, imports, first-call paths
                with make_context():
                    call()
            firsts: dict[str, list[float]] = {name: [] for name in variants}
            totals: dict[str, list[float]] = {name: [] for name in variants}
            chunks: dict[str, int] = {}
            for r in range(rounds):
                names = list(variants)[:: 1 if r % 2 == 0 else -1]
                for name in names:
                    with variants[name]():
                        first, total, count = call()
                    firsts[name].append(first * 1000)
                    totals[name].append(total * 1000)
                    chunks[name] = count
            problems = engine.context.take_problems()
            if problems:
                raise AssertionError(f"recording failed: {problems[0][:500]}")
            base, rec = "no plugin", "promptcache record"
            row: dict[str, Any] = {
                "path": label,
                "rounds": rounds,
                "chunk_delay_ms": chunk_delay * 1000,
                "chunks": chunks,
                "first_chunk_ms": {name: statistics.median(v) for name, v in firsts.items()},
                "last_chunk_ms": {name: statistics.median(v) for name, v in totals.items()},
                "first_chunk_added_ms": statistics.median(
                    a - b for a, b in zip(firsts[rec], firsts[base], strict=True)
                ),
                "last_chunk_added_ms": statistics.median(
                    a - b for a, b in zip(totals[rec], totals[base], strict=True)
                ),
                "first_chunk_rounds_ms": {k: [round(x, 2) for x in v] for k, v in firsts.items()},
            }
            log(
                f"    {label:<22} first chunk: no plugin {row['first_chunk_ms'][base]:6.2f} ms  "
                f"recording {row['first_chunk_ms'][rec]:6.2f} ms  (+{row['first_chunk_added_ms']:.2f} ms); "
                f"last chunk +{row['last_chunk_added_ms']:.2f} ms"
            )
            results.append(row)
        sdk.close()
        raw.close()
    saved = len(list(store.glob("*.json")))
    expected = 2 * (rounds + 1)
    if saved != expected:
        raise AssertionError(f"expected {expected} recordings saved while recording, found {saved}")
    return results
