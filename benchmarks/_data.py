"""Benchmark data: the requests, their recordings for pytest-promptcache and for vcrpy, machine facts.

Two templates (a JSON chat completion and a streamed one) are recorded for real, once per invocation:
through the openai SDK against the loopback fake provider in ``tests/llm_server.py``, by
pytest-promptcache in ``record`` mode and by vcrpy in ``new_episodes`` mode. Every other recording is
the template with a fixed-width marker in the prompt (and so in the echoed answer) replaced by its
index, and its key recomputed: writing 100,000 recordings takes seconds instead of 100,000 live calls,
and each generated file is exactly what the plugin would have written for that prompt.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import platform
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    # Only a type: the start-up and memory runs must not import the SDK before they mean to.
    from openai.types.chat import ChatCompletionMessageParam

ROOT = Path(__file__).resolve().parent.parent
MARKER = "BIDX0000000"  # replaced by a zero-padded index of the same width
WIDTH = len(MARKER) - len("BIDX")
MODEL = "gpt-4.1-mini"
# A fake key in the shape of a real one, so the scrubbing layers run as they would for a user.
API_KEY = "sk-proj-BENCHabcdefghijklmnopqrstuvwxyz0123456789"

SYSTEM_PROMPT = (
    "You are the support assistant of an online shop. Answer in at most three sentences, quote the "
    "order number when there is one, never promise a refund before the order has been checked, and "
    "hand the conversation to a human when the customer asks for one. Keep a friendly, plain tone; "
    "do not use markdown. If the question is not about the shop, say that you can only help with "
    "orders, deliveries, returns and invoices."
)
USER_PROMPT = (
    "Ticket {marker}: hello, I ordered a pair of walking boots two weeks ago and the tracking page "
    "still says the parcel is waiting at the depot. I was charged twice on my card for it. Can you "
    "tell me when it will arrive and whether the second charge will be refunded?"
)


def tag(index: int) -> str:
    return f"BIDX{index:0{WIDTH}d}"


def messages(index: int | str) -> list[ChatCompletionMessageParam]:
    marker = tag(index) if isinstance(index, int) else index
    return [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": USER_PROMPT.format(marker=marker)},
    ]


def request_body(index: int, *, stream: bool = False) -> dict[str, Any]:
    body: dict[str, Any] = {"messages": messages(index), "model": MODEL}
    if stream:
        body["stream"] = True
    return body


def spread(size: int, count: int) -> list[int]:
    """``count`` indices spread evenly over ``range(size)``, away from the ends.

    vcrpy scans its interactions in order until one matches, so a request it serves first-thing costs
    it almost nothing: the requests the benchmark sends sit across the whole cassette, as a suite's do.
    """
    count = min(count, size)
    return [int((i + 0.5) * size / count) for i in range(count)]


def import_fake_provider() -> Any:
    """``tests/llm_server.py``'s LLMServer class."""
    tests = str(ROOT / "tests")
    if tests not in sys.path:
        sys.path.insert(0, tests)
    import llm_server

    return llm_server.LLMServer


# -- templates, recorded for real ------------------------------------------------------------------------


@dataclass
class Templates:
    base_url: str  # the fake provider's URL when recorded; replays never connect to it
    # pytest-promptcache: the stored file's text and the canonical request JSON, marker included.
    plugin_file: dict[bool, str]
    plugin_canonical: dict[bool, str]
    plugin_key: dict[bool, str]
    # vcrpy: one interaction (request, response) as its YAML serializer loads it, marker included.
    vcr_interaction: dict[bool, dict[str, Any]]


def record_templates(workdir: Path) -> Templates:
    """Record the JSON and the streamed template once with each tool, through the real openai SDK."""
    import openai
    import vcr

    from pytest_promptcache.clients import install, uninstall
    from pytest_promptcache.keys import canonical_json
    from pytest_promptcache.session import CacheSession
    from pytest_promptcache.settings import build_settings
    from pytest_promptcache.store.files import read_recording

    server_cls = import_fake_provider()
    plugin_dir = workdir / "template-promptcache"
    vcr_path = workdir / "template-vcr.yaml"
    with server_cls() as server:
        base_url = f"{server.url}/v1"

        def call_both() -> None:
            client = openai.OpenAI(api_key=API_KEY, base_url=base_url, max_retries=0)
            reply = client.chat.completions.create(model=MODEL, messages=messages(MARKER))
            assert MARKER in (reply.choices[0].message.content or "")
            stream = client.chat.completions.create(
                model=MODEL,
                messages=messages(MARKER),
                stream=True,
            )
            text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
            assert MARKER in text
            client.close()

        settings = build_settings(rootdir=workdir, cli_mode="record", cli_dir=str(plugin_dir), env={}, ini={})
        engine = CacheSession(settings, env={})
        install(engine)
        try:
            call_both()
        finally:
            uninstall(engine)
        my_vcr = vcr.VCR(record_mode="new_episodes", match_on=VCR_MATCH_ON)
        with my_vcr.use_cassette(str(vcr_path)):
            call_both()

    plugin_file: dict[bool, str] = {}
    plugin_canonical: dict[bool, str] = {}
    plugin_key: dict[bool, str] = {}
    for path in sorted(plugin_dir.glob("*.json")):
        recording = read_recording(path)
        stream = recording.response.events is not None
        plugin_file[stream] = path.read_text(encoding="utf-8")
        plugin_canonical[stream] = canonical_json(recording.request)
        plugin_key[stream] = recording.key
    assert set(plugin_file) == {False, True}, "expected one JSON and one streamed template recording"

    from vcr.serializers import yamlserializer

    loaded = yamlserializer.deserialize(vcr_path.read_text(encoding="utf-8"))
    vcr_interaction: dict[bool, dict[str, Any]] = {}
    for interaction in loaded["interactions"]:
        body = interaction["request"]["body"]
        text = body.decode() if isinstance(body, bytes) else body
        vcr_interaction[bool(json.loads(text).get("stream"))] = interaction
    assert set(vcr_interaction) == {False, True}, "expected one JSON and one streamed vcrpy interaction"
    return Templates(base_url, plugin_file, plugin_canonical, plugin_key, vcr_interaction)


VCR_MATCH_ON = ["method", "scheme", "host", "port", "path", "query", "body"]


# -- generated recordings ------------------------------------------------------------------------------


def write_plugin_store(directory: Path, templates: Templates, size: int, streams: int = 10) -> None:
    """``size`` JSON recordings (indices 0..size-1) and ``streams`` streamed ones, in the store's format.

    Each file is the template's text with the marker and the key replaced: the key is the SHA-256 of
    the canonical request with the same replacement, as ``keys.key_of`` computes it.
    """
    directory.mkdir(parents=True, exist_ok=True)
    for stream, count in ((False, size), (True, streams)):
        canonical = templates.plugin_canonical[stream]
        text = templates.plugin_file[stream]
        template_key = templates.plugin_key[stream]
        assert text.count(template_key) == 1
        for index in range(count):
            marker = tag(index)
            key = hashlib.sha256(canonical.replace(MARKER, marker).encode("utf-8")).hexdigest()
            content = text.replace(MARKER, marker).replace(template_key, key)
            # Plain writes: the store's atomic writes (fsync per file) would only slow generation down.
            with open(directory / f"{key}.json", "w", encoding="utf-8") as fh:
                fh.write(content)


def plugin_key_of(templates: Templates, index: int, *, stream: bool = False) -> str:
    canonical = templates.plugin_canonical[stream].replace(MARKER, tag(index))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _swap(value: Any, marker: str) -> Any:
    if isinstance(value, str):
        return value.replace(MARKER, marker)
    if isinstance(value, bytes):
        return value.replace(MARKER.encode(), marker.encode())
    if isinstance(value, dict):
        return {k: _swap(v, marker) for k, v in value.items()}
    if isinstance(value, list):
        return [_swap(v, marker) for v in value]
    return value


def write_vcr_cassette(path: Path, templates: Templates, size: int, streams: int = 10) -> None:
    """A vcrpy cassette (its YAML serializer, as pytest-recording writes) with the same recordings."""
    from vcr.serializers import yamlserializer

    interactions = []
    for stream, count in ((False, size), (True, streams)):
        template = copy.deepcopy(templates.vcr_interaction[stream])
        for index in range(count):
            interactions.append(_swap(template, tag(index)))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yamlserializer.serialize({"interactions": interactions, "version": 1}), encoding="utf-8")


# -- the machine ------------------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gb = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem_gb = round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    versions: dict[str, str] = {}
    from importlib import metadata

    for dist in ("pytest-promptcache", "openai", "httpx", "httpx2", "vcrpy", "pytest-recording", "pytest"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = "not installed"
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gb": mem_gb,
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "versions": versions,
    }
