"""Peak memory of one tool replaying from a store of a given size, in a fresh interpreter.

    python benchmarks/_memory_worker.py TOOL STORE SIZE DISTINCT WORKDIR BASE_URL [notrace]

TOOL is promptcache, promptcache-miss or vcrpy.

Imports everything first (so their memory is the same for both tools), then starts tracemalloc, sets up
the tool (pytest-promptcache's engine, or vcrpy loading its cassette) and serves DISTINCT different
recordings once each through raw httpx2. ``promptcache-miss`` instead sends one request that has no
recording: the first miss against the store, which builds the miss index (every request read once).
Prints one JSON line: peak RSS before and after, tracemalloc peak, and the times taken (slowed by
tracemalloc unless ``notrace`` follows the arguments).
"""

from __future__ import annotations

import json
import resource
import sys
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def peak_rss_mib() -> float:
    """This process's peak RSS (VmHWM). Not ``ru_maxrss``: Linux carries that over from the parent
    across fork and exec, so a child of a big parent would report the parent's size."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(argv: list[str]) -> int:
    tool, store, size, distinct, workdir, base_url = argv[:6]
    trace = "notrace" not in argv[6:]
    import _data
    import _replay
    import httpx2
    import vcr  # noqa: F401  (imported by both runs, so it weighs on neither)
    from vcr.cassette import Cassette  # noqa: F401

    from pytest_promptcache import engine as _engine  # noqa: F401

    n, k = int(size), int(distinct)
    indices = _data.spread(n, k)
    bodies = [json.dumps(_data.request_body(i)).encode() for i in indices]
    client = httpx2.Client()
    url = f"{base_url}/chat/completions"
    headers = {"content-type": "application/json", "authorization": f"Bearer {_data.API_KEY}"}
    rss_before = peak_rss_mib()
    if trace:
        tracemalloc.start()
    started = time.perf_counter()
    context: object
    if tool.startswith("promptcache"):
        plugin = _replay.PluginTool(Path(store), Path(workdir))
        context = plugin.active()
    else:
        vcr_tool = _replay.VcrTool(Path(store))
        context = vcr_tool.active()
    setup_s = time.perf_counter() - started
    started = time.perf_counter()
    with context:
        if tool.startswith("promptcache-miss"):
            missing = json.dumps(_data.request_body(n + 12345)).encode()
            response = client.post(url, content=missing, headers=headers)
            assert response.status_code == 404, response.status_code
            calls = 1
        else:
            for i, body in zip(indices, bodies, strict=True):
                response = client.post(url, content=body, headers=headers)
                assert _data.tag(i).encode() in response.content, response.content[:200]
            calls = len(bodies)
    serve_s = time.perf_counter() - started
    peak = tracemalloc.get_traced_memory()[1] if trace else 0
    tracemalloc.stop()
    rss_after = peak_rss_mib()
    print(
        json.dumps(
            {
                "tool": tool,
                "size": n,
                "calls": calls,
                "setup_s": setup_s,
                "serve_s": serve_s,
                "maxrss_before_mib": rss_before,
                "maxrss_mib": rss_after,
                "tracemalloc_peak_mib": peak / 1024 / 1024 if trace else None,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
