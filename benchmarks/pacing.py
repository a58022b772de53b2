"""Does record pacing hold a configured RPM across processes?

Four worker processes record distinct requests as fast as they can against a loopback server for the
measured window, all with ``promptcache_record_rpm`` set and one shared state directory (as xdist workers
share one). The server counts what arrives. Target: the rate over the window within 10% of the RPM.

    python benchmarks/pacing.py                 # 60 s at 120 RPM, 4 processes
    python benchmarks/pacing.py --seconds 20    # a shorter check
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from llm_server import LLMServer


def worker(index: int, url: str, state_dir: str, cassette_dir: str, rpm: int, stop_at: float) -> None:
    import httpx2

    from pytest_promptcache.clients import install
    from pytest_promptcache.session import CacheSession
    from pytest_promptcache.settings import build_settings

    settings = build_settings(
        rootdir=Path(cassette_dir),
        cli_mode="record",
        cli_dir=cassette_dir,
        env={},
        ini={"promptcache_record_rpm": str(rpm), "promptcache_state_dir": state_dir},
    )
    install(CacheSession(settings, env={}))
    with httpx2.Client(base_url=url, timeout=120) as client:
        n = 0
        while time.time() < stop_at:
            body = {"model": "gpt-4.1-mini", "messages": [{"role": "user", "content": f"w{index} n{n}"}]}
            client.post("/v1/chat/completions", json=body).raise_for_status()
            n += 1


def main() -> int:
    raw = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=raw)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--rpm", type=int, default=120)
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--json", type=Path, default=Path(__file__).parent / "pacing.json")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp, LLMServer() as server:
        warmup = 5.0  # processes start and import; the window starts once requests flow
        start = time.time() + warmup
        stop_at = start + args.seconds
        procs = [
            multiprocessing.Process(
                target=worker,
                args=(i, server.url, f"{tmp}/state", f"{tmp}/cassettes", args.rpm, stop_at),
            )
            for i in range(args.processes)
        ]
        for p in procs:
            p.start()
        for p in procs:
            p.join()
        arrivals = [r.received_at for r in server.requests]

    in_window = [t for t in arrivals if start <= t < stop_at]
    achieved = len(in_window) * 60.0 / args.seconds
    error = (achieved - args.rpm) / args.rpm
    result: dict[str, Any] = {
        "rpm": args.rpm,
        "processes": args.processes,
        "window_seconds": args.seconds,
        "requests_in_window": len(in_window),
        "achieved_rpm": round(achieved, 1),
        "relative_error": round(error, 4),
        "target": "within 10% of the configured RPM",
        "met": abs(error) <= 0.10,
    }
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(
        f"pacing: {args.processes} processes, {args.rpm} RPM configured, {achieved:.1f} RPM achieved over "
        f"{args.seconds:.0f} s ({error:+.1%}): {'met' if result['met'] else 'MISSED'}"
    )
    return 0 if result["met"] else 1


if __name__ == "__main__":
    sys.exit(main())
