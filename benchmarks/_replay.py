"""Per-call replay cost: the floor (a MockTransport), pytest-promptcache and vcrpy, in one process.

Each measurement is a *cell*: one client path (the openai SDK on httpx2, raw httpx2, ...) over one set
of recordings. A cell runs rounds; each round times a batch of calls with every variant, in an order
that rotates from round to round, so slow drifts of a noisy machine hit all variants alike. Ratios
are taken per round (paired) and the medians of those are reported.

Variants:
- ``floor``: the client on a ``MockTransport`` whose handler returns the recorded response, built in
  advance from the very headers and bytes the replay serves. Nothing is looked up, keyed or parsed.
- ``promptcache``: the client on its default transport with pytest-promptcache installed in replay mode.
- ``vcrpy``: the same client with a vcrpy cassette active (record mode ``none``, body matching,
  ``allow_playback_repeats``), as pytest-recording sets it up, cassette loaded once per cell.
"""

from __future__ import annotations

import contextlib
import gc
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import _data

FLOOR, PLUGIN, VCR = "floor", "promptcache", "vcrpy"


# -- clients -------------------------------------------------------------------------------------------


class CurrentIndex:
    """The floor's handler answers the request the caller is about to send: every variant's call sets
    this, so the bookkeeping costs all of them the same and the floor needs no lookup."""

    value = 0


def _chunk_stream(module: Any, chunks: list[bytes]) -> Any:
    class Chunks(module.SyncByteStream):  # type: ignore[misc]
        def __iter__(self) -> Iterator[bytes]:
            return iter(chunks)

    return Chunks()


def floor_transport(module: Any, replays: dict[int, Any]) -> Any:
    def handler(request: Any) -> Any:
        replay = replays[CurrentIndex.value]
        return module.Response(
            replay.status, headers=replay.headers, stream=_chunk_stream(module, replay.chunks)
        )

    return module.MockTransport(handler)


@dataclass(frozen=True)
class ClientPath:
    """How calls are made: which client, which module below it, JSON or streamed."""

    name: str
    label: str
    module: str  # "httpx2" or "httpx"
    sdk: bool
    stream: bool = False

    def make(
        self, base_url: str, transport: Any | None, indices: list[int]
    ) -> tuple[Callable[[int], str], Callable[[], None]]:
        """A function making call ``i`` (one of ``indices``) and returning the answer's text, and a
        closer. Request arguments are built in advance: only the call itself is timed."""
        import httpx
        import httpx2
        import openai

        module: Any = httpx2 if self.module == "httpx2" else httpx
        kwargs: dict[str, Any] = {} if transport is None else {"transport": transport}
        if self.sdk:
            http_client: httpx2.Client | httpx.Client
            if self.module == "httpx2":
                http_client = openai.DefaultHttpx2Client(**kwargs)
            else:
                http_client = httpx.Client(follow_redirects=True, **kwargs)
            client = openai.OpenAI(
                api_key=_data.API_KEY,
                base_url=base_url,
                max_retries=0,
                # Typed for httpx2 only, the SDK drives an httpx client as well: the path this measures.
                http_client=http_client,  # type: ignore[arg-type]
            )
            msgs = {i: _data.messages(i) for i in indices}
            completions = client.chat.completions
            if self.stream:

                def call(i: int) -> str:
                    CurrentIndex.value = i
                    stream = completions.create(model=_data.MODEL, messages=msgs[i], stream=True)
                    return "".join(c.choices[0].delta.content or "" for c in stream if c.choices)

            else:

                def call(i: int) -> str:
                    CurrentIndex.value = i
                    reply = completions.create(model=_data.MODEL, messages=msgs[i])
                    return reply.choices[0].message.content or ""

            return call, client.close
        raw = module.Client(**kwargs)
        url = f"{base_url}/chat/completions"
        headers = {"content-type": "application/json", "authorization": f"Bearer {_data.API_KEY}"}
        import json

        bodies = {i: json.dumps(_data.request_body(i, stream=self.stream)).encode() for i in indices}
        post = raw.post

        def raw_call(i: int) -> str:
            CurrentIndex.value = i
            return post(url, content=bodies[i], headers=headers).content.decode()  # type: ignore[no-any-return]

        return raw_call, raw.close


PATHS = {
    p.name: p
    for p in (
        ClientPath("sdk-httpx2", "openai SDK on httpx2, JSON", "httpx2", sdk=True),
        ClientPath("sdk-httpx2-stream", "openai SDK on httpx2, stream", "httpx2", sdk=True, stream=True),
        ClientPath("sdk-httpx", "openai SDK on httpx 0.28, JSON", "httpx", sdk=True),
        ClientPath("raw-httpx2", "raw httpx2 POST, JSON", "httpx2", sdk=False),
        ClientPath("raw-httpx", "raw httpx 0.28 POST, JSON", "httpx", sdk=False),
    )
}


# -- the tools under test ------------------------------------------------------------------------------


class PluginTool:
    """pytest-promptcache driven through its core, as its pytest plugin drives it."""

    def __init__(self, store_dir: Path, workdir: Path, state_dir: Path | None = None) -> None:
        """``state_dir``: the state directory, for sessions that keep and preload served forms."""
        from pytest_promptcache.session import CacheSession
        from pytest_promptcache.settings import build_settings

        ini = {} if state_dir is None else {"promptcache_state_dir": str(state_dir)}
        settings = build_settings(rootdir=workdir, cli_mode="replay", cli_dir=str(store_dir), env={}, ini=ini)
        self.session = CacheSession(settings, env={})
        self.engine = self.session.engine()

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        from pytest_promptcache.clients import install, uninstall

        install(self.session)
        try:
            yield
        finally:
            uninstall(self.session)

    def problems(self) -> list[str]:
        """Messages of calls that would fail their test (a miss, a corrupt file)."""
        return self.session.context.take_problems()


class VcrTool:
    """A vcrpy cassette loaded once; its patches applied per batch, as ``use_cassette`` applies them."""

    def __init__(self, cassette_path: Path) -> None:
        import vcr
        from vcr.cassette import Cassette, CassetteContextDecorator

        my_vcr = vcr.VCR(record_mode="none", match_on=_data.VCR_MATCH_ON)
        config = my_vcr.get_merged_config(path=str(cassette_path), allow_playback_repeats=True)
        skip = CassetteContextDecorator._non_cassette_arguments
        started = time.perf_counter()
        self.cassette = Cassette.load(**{k: v for k, v in config.items() if k not in skip})
        self.load_seconds = time.perf_counter() - started
        assert len(self.cassette.data) > 0, f"vcrpy loaded nothing from {cassette_path}"

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        from vcr.patch import CassettePatcherBuilder

        with contextlib.ExitStack() as stack:
            for patcher in CassettePatcherBuilder(self.cassette).build():
                stack.enter_context(patcher)
            yield


# -- timing --------------------------------------------------------------------------------------------


def time_batch(call: Callable[[int], str], indices: list[int], n: int) -> float:
    """Microseconds per call over ``n`` calls cycling through ``indices``."""
    k = len(indices)
    gc.collect()
    started = time.perf_counter_ns()
    for j in range(n):
        call(indices[j % k])
    return (time.perf_counter_ns() - started) / n / 1000


@dataclass
class Cell:
    path: str
    size: int
    variants: dict[str, list[float]] = field(default_factory=dict)  # µs per call, one per round
    calls: dict[str, int] = field(default_factory=dict)  # calls per batch
    extra: dict[str, Any] = field(default_factory=dict)

    def median(self, variant: str) -> float | None:
        values = self.variants.get(variant)
        return statistics.median(values) if values else None

    def paired(self, variant: str, base: str, op: str = "ratio") -> float | None:
        a, b = self.variants.get(variant), self.variants.get(base)
        if not a or not b:
            return None
        if op == "ratio":
            return statistics.median(x / y for x, y in zip(a, b, strict=True))
        return statistics.median(x - y for x, y in zip(a, b, strict=True))

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {"path": self.path, "size": self.size, "calls_per_batch": self.calls}
        for v in self.variants:
            out[f"{v}_us"] = self.median(v)
            out[f"{v}_rounds_us"] = [round(x, 2) for x in self.variants[v]]
        for v in self.variants:
            if v != FLOOR and FLOOR in self.variants:
                out[f"{v}_over_floor_us"] = self.paired(v, FLOOR, "diff")
                out[f"{v}_ratio_to_floor"] = self.paired(v, FLOOR)
                diffs = [x - y for x, y in zip(self.variants[v], self.variants[FLOOR], strict=True)]
                if len(diffs) >= 4:
                    q = statistics.quantiles(diffs, n=4)
                    out[f"{v}_over_floor_iqr_us"] = [q[0], q[2]]
        if VCR in self.variants and PLUGIN in self.variants:
            out["vcrpy_over_promptcache"] = self.paired(VCR, PLUGIN)
        out.update(self.extra)
        return out


@dataclass
class Setup:
    """One variant of a cell, ready to run: its call function and the context it needs."""

    name: str
    call: Callable[[int], str]
    close: Callable[[], None]
    context: Callable[[], contextlib.AbstractContextManager[None]]


def _nullcontext() -> contextlib.AbstractContextManager[None]:
    return contextlib.nullcontext()


def measure_cell(
    path: ClientPath,
    size: int,
    base_url: str,
    hot: list[int],
    replays: dict[int, Any],
    plugin: PluginTool | None,
    vcr_tool: VcrTool | None,
    rounds: int,
    batch_seconds: float,
    max_calls: int,
    log: Callable[[str], None],
    extra: dict[str, Callable[[], contextlib.AbstractContextManager[None]]] | None = None,
) -> Cell:
    """One cell. ``extra`` adds variants: the default client under a context of its own (the plugin
    with an experimental change applied in-process, say)."""
    import httpx
    import httpx2

    module: Any = httpx2 if path.module == "httpx2" else httpx
    setups: list[Setup] = []
    call, close = path.make(base_url, floor_transport(module, replays), hot)
    setups.append(Setup(FLOOR, call, close, _nullcontext))
    if plugin is not None:
        call, close = path.make(base_url, None, hot)
        setups.append(Setup(PLUGIN, call, close, plugin.active))
    if vcr_tool is not None:
        call, close = path.make(base_url, None, hot)
        setups.append(Setup(VCR, call, close, vcr_tool.active))
    for name, context in (extra or {}).items():
        call, close = path.make(base_url, None, hot)
        setups.append(Setup(name, call, close, context))

    cell = Cell(path.name, size)
    # Check every variant serves the right answer, warm up, and size its batch to ~batch_seconds.
    for setup in setups:
        with setup.context():
            for i in hot[:3] * 2:
                text = setup.call(i)
                if _data.tag(i) not in text:
                    raise AssertionError(f"{setup.name} on {path.name}: call {i} got {text[:120]!r}")
            probe = min(len(hot), 10)
            per_call = time_batch(setup.call, hot, probe)
            if per_call * probe / 1e6 < batch_seconds / 10:
                per_call = time_batch(setup.call, hot, max(probe, int(batch_seconds / 10 / (per_call / 1e6))))
        if plugin is not None and setup.name != VCR:
            problems = plugin.problems()
            if problems:
                raise AssertionError(f"promptcache reported problems: {problems[0][:500]}")
        n = int(batch_seconds / (per_call / 1e6))
        cell.calls[setup.name] = max(3, min(max_calls, n))
        cell.variants[setup.name] = []

    for r in range(rounds):
        shift = r % len(setups)
        for setup in setups[shift:] + setups[:shift]:
            with setup.context():
                cell.variants[setup.name].append(time_batch(setup.call, hot, cell.calls[setup.name]))
    for setup in setups:
        setup.close()
    if plugin is not None:
        assert not plugin.problems()
    parts = [f"{name} {cell.median(name):9.1f} µs" for name in cell.variants]
    log(f"    {path.name:<18} {size:>7} recordings: " + "  ".join(parts))
    return cell


def measure_cold(
    path: ClientPath,
    size: int,
    base_url: str,
    store_dir: Path,
    workdir: Path,
    indices: list[int],
    replays: dict[int, Any],
    rounds: int,
    log: Callable[[str], None],
    calls: int = 100,
) -> Cell:
    """First serve of each recording in a session: fresh engines (empty memo and memory tier), each of
    ``indices`` requested once per engine, as many engines per round as make ``calls`` calls (so a
    10-recording store is timed over as many first serves as a large one). The files are in the OS page
    cache: this is the cost of key derivation, one file read, JSON parsing and validation."""
    import httpx
    import httpx2

    module: Any = httpx2 if path.module == "httpx2" else httpx
    floor_call, floor_close = path.make(base_url, floor_transport(module, replays), indices)
    call, close = path.make(base_url, None, indices)
    engines = max(1, -(-calls // len(indices)))
    cell = Cell(path.name, size)
    cell.variants = {FLOOR: [], PLUGIN: []}
    cell.calls = {FLOOR: engines * len(indices), PLUGIN: engines * len(indices)}
    cell.extra = {"engines_per_round": engines, "distinct_per_engine": len(indices)}
    for r in range(rounds):
        order = [FLOOR, PLUGIN] if r % 2 == 0 else [PLUGIN, FLOOR]
        for name in order:
            total = 0.0
            for _ in range(engines):
                if name == FLOOR:
                    total += time_batch(floor_call, indices, len(indices))
                    continue
                tool = PluginTool(store_dir, workdir)
                with tool.active():
                    total += time_batch(call, indices, len(indices))
                problems = tool.problems()
                if problems:
                    raise AssertionError(f"promptcache cold replay failed: {problems[0][:500]}")
            cell.variants[name].append(total / engines)
    floor_close()
    close()
    log(
        f"    {path.name:<18} {size:>7} recordings, first serve: floor {cell.median(FLOOR):9.1f} µs  "
        f"promptcache {cell.median(PLUGIN):9.1f} µs"
    )
    return cell


def replays_for(
    store_dir: Path, templates: _data.Templates, indices: list[int], stream: bool
) -> dict[int, Any]:
    """The plugin's own prebuilt responses for these recordings: the floor serves exactly these bytes."""
    from pytest_promptcache.store.cassettes import CassetteStore

    store = CassetteStore(store_dir)
    out: dict[int, Any] = {}
    for i in indices:
        entry = store.get(_data.plugin_key_of(templates, i, stream=stream))
        assert entry is not None, f"recording {i} missing from {store_dir}"
        out[i] = entry.replay
    return out
