"""pytest-promptcache benchmarks: replay cost against the floor and against vcrpy, at scale.

    python benchmarks/run.py            # full run, ~6.5 minutes on 2 cores
    python benchmarks/run.py --quick    # ~70 s smoke run (fewer rounds, sizes up to 1,000)

Prints a Markdown report at the end and writes it to ``benchmarks/RESULTS.md``, with every number (and
every round behind each median) in ``benchmarks/results.json``. All data lives in a temporary directory,
removed at the end (``--keep`` keeps it). See ``benchmarks/README.md`` for what is measured and how.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import _data  # noqa: E402
import _experiments  # noqa: E402
import _firstchunk  # noqa: E402
import _replay  # noqa: E402
import _report  # noqa: E402
import _startup  # noqa: E402
import bounds  # noqa: E402
import cold  # noqa: E402


@dataclass(frozen=True)
class Config:
    name: str
    rounds: int  # rounds per per-call cell (each: one batch per variant)
    batch_seconds: float  # target length of one batch
    max_calls: int
    plugin_sizes: tuple[int, ...]
    vcr_sizes: tuple[int, ...]
    startup_sizes: tuple[int, ...]
    startup_runs: int
    cold_rounds: int
    cold_calls: int  # distinct recordings served once each per cold round
    memory_distinct: int
    chunk_rounds: int
    miss_sizes: tuple[int, ...]
    retention_served: int
    sdk_paths: tuple[str, ...]


FULL = Config(
    name="full",
    rounds=21,
    batch_seconds=0.06,
    max_calls=5000,
    plugin_sizes=(10, 200, 1000, 100_000),
    vcr_sizes=(10, 200, 1000, 10_000),
    startup_sizes=(10, 1000, 100_000),
    startup_runs=9,
    cold_rounds=5,
    cold_calls=100,
    memory_distinct=100,
    chunk_rounds=9,
    miss_sizes=(10, 200, 1000, 5000, 100_000),
    retention_served=10_000,
    sdk_paths=("sdk-httpx2", "sdk-httpx2-stream", "sdk-httpx", "raw-httpx2", "raw-httpx"),
)
QUICK = Config(
    name="quick",
    rounds=7,
    batch_seconds=0.025,
    max_calls=2000,
    plugin_sizes=(10, 200, 1000),
    vcr_sizes=(10, 200, 1000),
    startup_sizes=(10, 1000),
    startup_runs=3,
    cold_rounds=3,
    cold_calls=50,
    memory_distinct=50,
    chunk_rounds=3,
    miss_sizes=(10, 200, 1000),
    retention_served=1000,
    sdk_paths=("sdk-httpx2", "sdk-httpx2-stream", "sdk-httpx", "raw-httpx2", "raw-httpx"),
)
SCALE_PATHS = ("raw-httpx2", "sdk-httpx2")
HOT = 10  # distinct requests a per-call batch cycles through, spread over the store


class Log:
    def __init__(self) -> None:
        self.started = time.perf_counter()

    def __call__(self, text: str) -> None:
        print(f"[{time.perf_counter() - self.started:6.1f}s] {text}", flush=True)


class Data:
    """Stores and cassettes of each size, generated on first use and reused for the whole run."""

    def __init__(self, workdir: Path, templates: _data.Templates, log: Callable[[str], None]) -> None:
        self.workdir = workdir
        self.templates = templates
        self.log = log
        self._stores: dict[int, Path] = {}
        self._cassettes: dict[int, Path] = {}
        self.generation: dict[str, float] = {}

    def store(self, size: int) -> Path:
        if size not in self._stores:
            path = self.workdir / f"promptcache-{size}"
            started = time.perf_counter()
            _data.write_plugin_store(path, self.templates, size)
            took = time.perf_counter() - started
            self.generation[f"promptcache-{size}"] = took
            self.log(f"  wrote {size:,} pytest-promptcache recordings (+10 streamed) in {took:.1f} s")
            self._stores[size] = path
        return self._stores[size]

    def cassette(self, size: int) -> Path:
        if size not in self._cassettes:
            path = self.workdir / f"vcrpy-{size}.yaml"
            started = time.perf_counter()
            _data.write_vcr_cassette(path, self.templates, size)
            took = time.perf_counter() - started
            self.generation[f"vcrpy-{size}"] = took
            self.log(f"  wrote a vcrpy cassette of {size:,} interactions (+10 streamed) in {took:.1f} s")
            self._cassettes[size] = path
        return self._cassettes[size]


def per_call(cfg: Config, data: Data, log: Log) -> tuple[list[dict[str, Any]], dict[int, dict[str, Any]]]:
    """Sections 1 and 2: every client path at the smallest size, then the scale paths at every size."""
    cells: list[dict[str, Any]] = []
    vcr_load: dict[int, dict[str, Any]] = {}
    base_url = data.templates.base_url
    for size in cfg.plugin_sizes:
        store = data.store(size)
        plugin = _replay.PluginTool(store, data.workdir)
        vcr_tool = None
        if size in cfg.vcr_sizes:
            vcr_tool = _replay.VcrTool(data.cassette(size))
            vcr_load[size] = {"load_s": vcr_tool.load_seconds, "interactions": len(vcr_tool.cassette.data)}
            log(f"  vcrpy loaded {size:,} interactions in {vcr_tool.load_seconds:.2f} s")
        paths = cfg.sdk_paths if size == cfg.plugin_sizes[0] else SCALE_PATHS
        for name in paths:
            path = _replay.PATHS[name]
            hot = _data.spread(10 if path.stream else size, HOT)
            replays = _replay.replays_for(store, data.templates, hot, path.stream)
            cell = _replay.measure_cell(
                path,
                size,
                base_url,
                hot,
                replays,
                plugin,
                vcr_tool,
                cfg.rounds,
                cfg.batch_seconds,
                cfg.max_calls,
                log,
            )
            summary = cell.summary()
            summary["kind"] = "warm"
            cells.append(summary)
        for name in SCALE_PATHS:
            path = _replay.PATHS[name]
            indices = _data.spread(size, cfg.cold_calls)
            replays = _replay.replays_for(store, data.templates, indices, path.stream)
            cell = _replay.measure_cold(
                path,
                size,
                base_url,
                store,
                data.workdir,
                indices,
                replays,
                cfg.cold_rounds,
                log,
                cfg.cold_calls,
            )
            summary = cell.summary()
            summary["kind"] = "first-serve"
            cells.append(summary)
        del plugin, vcr_tool
    # vcrpy sizes beyond the plugin's (10,000 in the full run): scale paths only, for the extrapolation.
    for size in cfg.vcr_sizes:
        if size in cfg.plugin_sizes:
            continue
        vcr_tool = _replay.VcrTool(data.cassette(size))
        vcr_load[size] = {"load_s": vcr_tool.load_seconds, "interactions": len(vcr_tool.cassette.data)}
        log(f"  vcrpy loaded {size:,} interactions in {vcr_tool.load_seconds:.2f} s")
        store = data.store(size)  # the floor serves the plugin's bytes for the same recordings
        for name in SCALE_PATHS:
            path = _replay.PATHS[name]
            hot = _data.spread(size, HOT)
            replays = _replay.replays_for(store, data.templates, hot, path.stream)
            cell = _replay.measure_cell(
                path,
                size,
                base_url,
                hot,
                replays,
                None,
                vcr_tool,
                max(3, cfg.rounds // 2),
                cfg.batch_seconds,
                cfg.max_calls,
                log,
            )
            summary = cell.summary()
            summary["kind"] = "warm"
            cells.append(summary)
        del vcr_tool
    return cells, vcr_load


def memory(cfg: Config, data: Data, log: Log) -> list[dict[str, Any]]:
    rows = []
    base_url = data.templates.base_url
    jobs: list[tuple[str, int, int]] = []
    for size in cfg.plugin_sizes:
        jobs.append(("promptcache", size, min(size, cfg.memory_distinct)))
    largest = cfg.plugin_sizes[-1]
    # Many different recordings served in one session: does memory stay bounded (memory_size)?
    for many in (5000, 20_000) if cfg.name == "full" else (1000,):
        jobs.append(("promptcache", largest, min(largest, many)))
    for size in cfg.vcr_sizes:
        jobs.append(("vcrpy", size, min(size, cfg.memory_distinct if size <= 1000 else 10)))
    for tool, size, distinct in jobs:
        source = data.store(size) if tool == "promptcache" else data.cassette(size)
        # Peak RSS and times from a run without tracemalloc (which inflates both); tracemalloc's peak
        # from a second run, for pytest-promptcache only (vcrpy's scans take minutes under it).
        row = _startup.memory(tool, source, size, distinct, data.workdir, base_url, ["notrace"])
        if tool == "promptcache":
            traced = _startup.memory(tool, source, size, distinct, data.workdir, base_url)
            row["tracemalloc_peak_mib"] = traced["tracemalloc_peak_mib"]
        row["distinct"] = distinct
        peak = row["tracemalloc_peak_mib"]
        log(
            f"    memory {tool:<12} {size:>7} recordings, {distinct:>5} served: "
            f"peak RSS {row['maxrss_mib']:6.1f} MiB (imports alone {row['maxrss_before_mib']:.1f}), "
            f"set-up {row['setup_s']:.2f} s" + (f", tracemalloc peak {peak:6.1f} MiB" if peak else "")
        )
        rows.append(row)
    return rows


def misses(cfg: Config, data: Data, log: Log) -> list[dict[str, Any]]:
    rows = []
    for size in cfg.miss_sizes:
        row = _experiments.miss_times(data.store(size), data.workdir, data.templates.base_url, size)
        log(
            f"    miss {size:>7} recordings: first {row['first_miss_s'] * 1000:9.1f} ms, "
            f"next {row['next_miss_s'][0] * 1000:9.1f} ms"
        )
        rows.append(row)
    return rows


def section_replay(cfg: Config, data: Data, results: dict[str, Any], log: Log) -> None:
    log("1-2. per-call replay cost (floor / pytest-promptcache / vcrpy), then at scale")
    results["per_call"], results["vcr_load"] = per_call(cfg, data, log)


def section_startup(cfg: Config, data: Data, results: dict[str, Any], log: Log) -> None:
    log("2. start-up: pytest on one trivial test, without and with the plugin")
    stores = {size: data.store(size) for size in cfg.startup_sizes}
    results["startup"] = _startup.pytest_startup(data.workdir, stores, cfg.startup_runs, log)
    smallest = {cfg.plugin_sizes[0]: stores.get(cfg.plugin_sizes[0]) or data.store(cfg.plugin_sizes[0])}
    results["startup"] += _startup.pytest_startup(
        data.workdir, smallest, cfg.startup_runs, log, kind="empty test, -p no:respx"
    )
    # Importing openai costs ~0.5 s and varies more: twice the runs.
    results["startup"] += _startup.pytest_startup(
        data.workdir, smallest, 2 * cfg.startup_runs, log, kind="test module importing openai"
    )
    results["startup_breakdown"] = _startup.configure_breakdown(cfg.startup_runs)
    results["import_time"] = _startup.import_times()
    bd = results["startup_breakdown"]
    imported = bd["modules_imported_after_configure"]
    log(f"    in-process breakdown (median ms): {bd['median_ms']}; imported: {imported}")


def section_memory(cfg: Config, data: Data, results: dict[str, Any], log: Log) -> None:
    log("2. peak memory, fresh process per measurement")
    results["memory"] = memory(cfg, data, log)
    size = cfg.plugin_sizes[-1]
    row = _experiments.retained_memory(
        data.store(size), data.workdir, data.templates.base_url, size, cfg.retention_served
    )
    results["memory_retention"] = row
    log(
        f"    after serving {row['served']:,} different recordings: {row['traced_mib']:.1f} MiB traced, "
        f"{row['held_by_call_events_mib']:.1f} held by the session's call events, "
        f"{row['held_by_memory_tier_and_key_memo_mib']:.1f} by the memory tier and key memo"
    )


def section_recording(cfg: Config, data: Data, results: dict[str, Any], log: Log) -> None:
    log("3. recording: time to the first streamed chunk, chunks 100 ms apart")
    results["first_chunk"] = _firstchunk.measure(data.workdir, cfg.chunk_rounds, 0.1, log)


def section_miss(cfg: Config, data: Data, results: dict[str, Any], log: Log) -> None:
    log("extra: a replay miss (nearest-recording search) at each size")
    results["miss"] = misses(cfg, data, log)
    size = cfg.miss_sizes[-1]
    row = _startup.memory(
        "promptcache-miss", data.store(size), size, 1, data.workdir, data.templates.base_url, ["notrace"]
    )
    results["miss_memory"] = [row]
    log(f"    miss {size:>7} recordings, fresh process: peak RSS {row['maxrss_mib']:.1f} MiB")


def section_breakdown(cfg: Config, data: Data, results: dict[str, Any], log: Log) -> None:
    log("extra: where one warm replay's time goes (timeit, best of 5)")
    results["replay_breakdown"] = _experiments.replay_breakdown(
        data.store(cfg.plugin_sizes[0]), data.workdir, data.templates.base_url
    )


def section_bounds(cfg: Config, data: Data, results: dict[str, Any], log: Log) -> None:
    log("bounded costs: misses against huge prompts and stores, one huge SSE event (benchmarks/bounds.py)")
    results["bounds"] = bounds.run(cfg.name == "quick", set(bounds.SECTIONS), log)


def section_cold(cfg: Config, data: Data, results: dict[str, Any], log: Log) -> None:
    log("cold and warm per pytest process: floor / pytest-promptcache / cassetter (benchmarks/cold.py)")
    results["cold"] = cold.run(cfg.name == "quick", os.environ.get("PROMPTCACHE_BENCH_CASSETTER"), log)


SECTIONS: dict[str, Callable[[Config, Data, dict[str, Any], Log], None]] = {
    "replay": section_replay,
    "startup": section_startup,
    "memory": section_memory,
    "recording": section_recording,
    "miss": section_miss,
    "breakdown": section_breakdown,
    "bounds": section_bounds,
    "cold": section_cold,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="~1 minute smoke run")
    parser.add_argument("--json", type=Path, default=HERE / "results.json", help="where to write the numbers")
    parser.add_argument("--md", type=Path, default=HERE / "RESULTS.md", help="where to write the report")
    parser.add_argument("--keep", action="store_true", help="keep the temporary data directory")
    parser.add_argument(
        "--sections",
        default="replay,startup,memory,recording,miss,breakdown,bounds,cold",
        help="comma-separated subset of: replay,startup,memory,recording,miss,breakdown,bounds,cold",
    )
    args = parser.parse_args(argv)
    cfg = QUICK if args.quick else FULL
    sections = {s.strip() for s in args.sections.split(",") if s.strip()}
    log = Log()
    workdir = Path(tempfile.mkdtemp(prefix="promptcache-bench-"))
    results: dict[str, Any] = {
        "schema": 1,
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "mode": cfg.name,
        "config": dict(cfg.__dict__),
        "machine": _data.machine(),
        "workdir": str(workdir),
    }
    m = results["machine"]
    log(f"pytest-promptcache benchmarks ({cfg.name}) on {m['cpu']}, {m['cores']} cores, Python {m['python']}")
    log(f"data in {workdir}")
    try:
        templates = _data.record_templates(workdir)
        data = Data(workdir, templates, log)
        for name, run_section in SECTIONS.items():
            if name not in sections:
                continue
            try:
                run_section(cfg, data, results, log)
            except Exception:  # one section failing must not lose the others' numbers
                error = traceback.format_exc()
                results.setdefault("errors", {})[name] = error
                log(f"section {name} FAILED:\n{error}")
        results["generation_s"] = data.generation
    finally:
        if args.keep:
            log(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    results["finished_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    results["elapsed_s"] = round(time.perf_counter() - log.started, 1)
    results["targets"] = _report.targets(results)
    args.json.write_text(json.dumps(results, indent=2, default=str) + "\n", encoding="utf-8")
    markdown = _report.markdown(results)
    args.md.write_text(markdown, encoding="utf-8")
    print()
    print(markdown)
    log(f"wrote {args.json} and {args.md}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
