"""Targets and the Markdown report, both computed from the results dictionary alone (so the report can
be rebuilt from ``results.json``: ``python benchmarks/_report.py benchmarks/results.json``)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import _replay

FLAT_TOLERANCE = 0.10  # "flat": within 10% of the smallest store's figure ...
FLAT_SLACK_US = 5.0  # ... or within 5 µs, whichever is larger (the noise of one machine)


def _cell(results: dict[str, Any], path: str, size: int, kind: str = "warm") -> dict[str, Any] | None:
    for cell in results.get("per_call", []):
        if cell["path"] == path and cell["size"] == size and cell.get("kind") == kind:
            return cell  # type: ignore[no-any-return]
    return None


def _sizes(results: dict[str, Any], path: str, kind: str = "warm", key: str = "promptcache_us") -> list[int]:
    return sorted(
        {
            c["size"]
            for c in results.get("per_call", [])
            if c["path"] == path and c.get("kind") == kind and key in c
        }
    )


def vcr_extrapolation(results: dict[str, Any], path: str, to_size: int) -> dict[str, Any] | None:
    """Least-squares line through vcrpy's per-call time over the sizes measured (>= 200), evaluated at
    ``to_size``: vcrpy compares the request with every interaction of the cassette, so it is linear."""
    points = [
        (c["size"], c["vcrpy_us"])
        for c in results.get("per_call", [])
        if c["path"] == path and c.get("kind") == "warm" and c.get("vcrpy_us") and c["size"] >= 200
    ]
    if len(points) < 2:
        return None
    n = len(points)
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    slope = sum((x - mx) * (y - my) for x, y in points) / sxx
    intercept = my - slope * mx
    load = results.get("vcr_load", {})
    load_points = [(int(k), v["load_s"]) for k, v in load.items() if int(k) >= 200]
    load_at = None
    if len(load_points) >= 2:
        lx = sum(x for x, _ in load_points) / len(load_points)
        ly = sum(y for _, y in load_points) / len(load_points)
        lsxx = sum((x - lx) ** 2 for x, _ in load_points)
        lslope = sum((x - lx) * (y - ly) for x, y in load_points) / lsxx
        load_at = ly + lslope * (to_size - lx)
    return {
        "path": path,
        "size": to_size,
        "from_sizes": [x for x, _ in points],
        "us_per_recording": slope,
        "vcrpy_us": intercept + slope * to_size,
        "load_s": load_at,
    }


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []

    def add(name: str, measured: str, met: bool | None, detail: str = "") -> None:
        out.append({"target": name, "measured": measured, "met": met, "detail": detail})

    sizes = _sizes(results, "raw-httpx2")
    if sizes:
        smallest, largest = sizes[0], sizes[-1]
        worst = max(_cell(results, "raw-httpx2", s)["promptcache_over_floor_us"] for s in sizes)  # type: ignore[index]
        c = _cell(results, "raw-httpx2", smallest)
        assert c is not None
        add(
            "transport level (raw httpx2): replay adds <= 20 µs per call over a MockTransport",
            f"+{c['promptcache_over_floor_us']:.1f} µs at {smallest} recordings "
            f"(worst over all sizes +{worst:.1f} µs; floor {c['floor_us']:.1f} µs)",
            worst <= 20.0,
        )
        rh = _cell(results, "raw-httpx", smallest)
        if rh:
            add(
                "transport level (raw httpx 0.28): replay adds <= 20 µs per call",
                f"+{rh['promptcache_over_floor_us']:.1f} µs (floor {rh['floor_us']:.1f} µs)",
                rh["promptcache_over_floor_us"] <= 20.0,
            )
        for path in ("sdk-httpx2", "sdk-httpx", "sdk-httpx2-stream"):
            c = _cell(results, path, smallest)
            if c is None:
                continue
            worst_ratio = max(
                _cell(results, path, s)["promptcache_ratio_to_floor"]  # type: ignore[index]
                for s in _sizes(results, path)
            )
            add(
                f"openai SDK ({_replay.PATHS[path].label}): <= 1.05x the floor",
                f"{c['promptcache_ratio_to_floor']:.3f}x at {smallest} recordings "
                f"(+{c['promptcache_over_floor_us']:.1f} µs on {c['floor_us']:.0f} µs; "
                f"worst size {worst_ratio:.3f}x)",
                worst_ratio <= 1.05,
            )
        for path in ("raw-httpx2", "sdk-httpx2"):
            first = _cell(results, path, smallest)
            last = _cell(results, path, largest)
            if first is None or last is None:
                continue
            a, b = first["promptcache_us"], last["promptcache_us"]
            flat = b <= max(a * (1 + FLAT_TOLERANCE), a + FLAT_SLACK_US)
            add(
                f"flat from {smallest:,} to {largest:,} recordings, warm replay ({path})",
                f"{a:.1f} µs -> {b:.1f} µs ({b / a:.2f}x)",
                flat,
            )
            cold_a = _cell(results, path, smallest, "first-serve")
            cold_b = _cell(results, path, largest, "first-serve")
            if cold_a and cold_b:
                a, b = cold_a["promptcache_us"], cold_b["promptcache_us"]
                add(
                    f"flat from {smallest:,} to {largest:,} recordings, first serve of a recording ({path})",
                    f"{a:.1f} µs -> {b:.1f} µs ({b / a:.2f}x)",
                    b <= max(a * (1 + FLAT_TOLERANCE), a + FLAT_SLACK_US),
                )
        miss_rows = results.get("miss", [])
        if len(miss_rows) >= 2:
            a, b = miss_rows[0], miss_rows[-1]
            add(
                f"flat with size: a replay miss (fails the test) ({a['size']:,} -> {b['size']:,} recordings)",
                f"{a['next_miss_s'][0] * 1000:.1f} ms -> {b['next_miss_s'][0] * 1000:,.0f} ms per miss "
                f"(first miss of the session {b['first_miss_s'] * 1000:,.0f} ms)",
                b["next_miss_s"][0] <= max(0.05, 2 * a["next_miss_s"][0]),
                "not a stated target; the miss path is what makes size matter",
            )
        retention = results.get("memory_retention")
        if retention:
            add(
                "flat with size: memory of a session serving many different recordings "
                f"({retention['served']:,} served, memory tier {retention['memory_tier_size']:,})",
                f"{retention['traced_mib']:.0f} MiB traced, "
                f"{retention['held_by_call_events_mib']:.0f} MiB of it held by the session's call events",
                retention["held_by_call_events_mib"] < 0.25 * retention["traced_mib"],
                "not a stated target",
            )
        for path in ("raw-httpx2", "sdk-httpx2"):
            c = _cell(results, path, 200)
            if c is None or "vcrpy_over_promptcache" not in c:
                continue
            added_ratio = (c["vcrpy_us"] - c["floor_us"]) / max(c["promptcache_us"] - c["floor_us"], 1e-9)
            add(
                f">= 15x faster than vcrpy with body matching at 200 recordings ({path}, end to end)",
                f"{c['vcrpy_over_promptcache']:.1f}x ({c['vcrpy_us']:.0f} µs vs {c['promptcache_us']:.0f} µs "
                f"per call; cost added over the floor: {added_ratio:.0f}x)",
                c["vcrpy_over_promptcache"] >= 15,
            )
    for row in results.get("startup", []):
        add(
            f"start-up <= 50 ms over plain pytest ({row.get('kind', 'empty test')}, "
            f"{row['size']:,} recordings)",
            f"+{row['added_ms']:.0f} ms ({row['without_ms']:.0f} -> {row['with_ms']:.0f} ms)",
            row["added_ms"] <= 50,
        )
    for row in results.get("first_chunk", []):
        add(
            f"recording: first streamed chunk within 5 ms of no plugin ({row['path']})",
            f"+{row['first_chunk_added_ms']:.2f} ms ({row['first_chunk_ms']['no plugin']:.2f} -> "
            f"{row['first_chunk_ms']['promptcache record']:.2f} ms)",
            row["first_chunk_added_ms"] <= 5,
        )
    return out


def _f(value: Any, fmt: str = ".1f", suffix: str = "") -> str:
    if value is None:
        return "-"
    return f"{value:{fmt}}{suffix}"


def markdown(results: dict[str, Any]) -> str:
    m = results["machine"]
    v = m["versions"]
    lines = [
        "# pytest-promptcache benchmarks",
        "",
        f"`python benchmarks/run.py{' --quick' if results['mode'] == 'quick' else ''}` "
        f"({results['mode']} run, {results.get('elapsed_s', '?')} s, {results['started_at']}).",
        "",
        f"**Machine:** {m['cpu']}, {m['cores']} cores, {m['memory_gb']} GB RAM, {m['platform']}; "
        f"{m['implementation']} {m['python']}. pytest-promptcache {v['pytest-promptcache']}, openai "
        f"{v['openai']}, httpx2 {v['httpx2']}, httpx {v['httpx']}, vcrpy {v['vcrpy']}, pytest-recording "
        f"{v['pytest-recording']}, pytest {v['pytest']}.",
        "",
        "## Targets",
        "",
        "| target | measured | met |",
        "|---|---|---|",
    ]
    for t in results.get("targets", []):
        met = {True: "yes", False: "**no**", None: "-"}[t["met"]]
        detail = f" ({t['detail']})" if t.get("detail") else ""
        lines.append(f"| {t['target']}{detail} | {t['measured']} | {met} |")

    cells = results.get("per_call", [])
    if cells:
        smallest = min(c["size"] for c in cells)
        lines += [
            "",
            f"## 1. Per-call replay cost ({smallest} recordings present)",
            "",
            "Median µs per call over rounds; ratios and differences are medians of per-round pairs "
            "(IQR: interquartile range of those pairs, the noise of this machine). "
            "Floor: the same client on a `MockTransport` returning the recorded response's bytes, "
            "prebuilt. vcrpy: record mode `none`, `match_on` = method, scheme, host, port, path, query, "
            "body; `allow_playback_repeats`.",
            "",
            "| client | floor µs | promptcache µs | added µs | x floor | vcrpy µs | x floor "
            "| vcrpy / promptcache |",
            "|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for c in cells:
            if c["size"] != smallest or c.get("kind") != "warm":
                continue
            row = [
                _replay.PATHS[c["path"]].label,
                _f(c.get("floor_us")),
                _f(c.get("promptcache_us")),
                _f(c.get("promptcache_over_floor_us"), "+.1f")
                + (
                    " (IQR {:+.0f}..{:+.0f})".format(*c["promptcache_over_floor_iqr_us"])
                    if "promptcache_over_floor_iqr_us" in c
                    else ""
                ),
                _f(c.get("promptcache_ratio_to_floor"), ".3f"),
                _f(c.get("vcrpy_us"), ".0f"),
                _f(c.get("vcrpy_ratio_to_floor"), ".2f"),
                _f(c.get("vcrpy_over_promptcache"), ".1f", "x"),
            ]
            lines.append("| " + " | ".join(row) + " |")
        lines += [
            "",
            "## 2. At scale",
            "",
            "Warm: the same 10 requests cycled (spread over the store; for vcrpy, over the cassette). "
            "First serve: fresh engines, each recording requested once per engine, 100 calls per round "
            "(key derivation, one file read, JSON parsing and validation; files in the OS cache). With "
            "10 recordings each engine serves only 10, so its one-off costs weigh 10 times more per call "
            "than with 100.",
            "",
            "| recordings | client | floor µs | promptcache warm µs (x floor) | promptcache first serve µs "
            "(x floor) | vcrpy µs (x floor) | vcrpy / promptcache | vcrpy cassette load |",
            "|---:|---|---:|---:|---:|---:|---:|---:|",
        ]
        vcr_load = results.get("vcr_load", {})
        sizes = sorted({c["size"] for c in cells})
        for size in sizes:
            for path in ("raw-httpx2", "sdk-httpx2"):
                warm = _cell(results, path, size)
                cold = _cell(results, path, size, "first-serve")
                if warm is None:
                    continue
                load = vcr_load.get(size) or vcr_load.get(str(size))
                pc = (
                    f"{warm['promptcache_us']:.1f} ({warm['promptcache_ratio_to_floor']:.3f}x)"
                    if "promptcache_us" in warm
                    else "-"
                )
                fs = (
                    f"{cold['promptcache_us']:.1f} ({cold['promptcache_ratio_to_floor']:.2f}x)"
                    if cold
                    else "-"
                )
                vc = (
                    f"{warm['vcrpy_us']:,.0f} ({warm['vcrpy_ratio_to_floor']:.1f}x)"
                    if "vcrpy_us" in warm
                    else "-"
                )
                row = [
                    f"{size:,}",
                    _replay.PATHS[path].label,
                    f"{warm['floor_us']:.1f}",
                    pc,
                    fs,
                    vc,
                    _f(warm.get("vcrpy_over_promptcache"), ",.0f", "x"),
                    _f(load["load_s"] if load else None, ".2f", " s"),
                ]
                lines.append("| " + " | ".join(row) + " |")
        largest = max(sizes)
        vcr_sizes = sorted(c["size"] for c in cells if c["path"] == "raw-httpx2" and "vcrpy_us" in c)
        target = 100_000
        if vcr_sizes and max(vcr_sizes) < target:
            lines += [
                "",
                f"vcrpy was not run with {target:,} recordings; extrapolated (linear fit over "
                f"{', '.join(f'{s:,}' for s in vcr_sizes if s >= 200)}):",
                "",
            ]
            for path in ("raw-httpx2", "sdk-httpx2"):
                ex = vcr_extrapolation(results, path, target)
                measured = _cell(results, path, largest)
                if ex is None:
                    continue
                versus = ""
                if measured is not None and largest == target and "promptcache_us" in measured:
                    versus = (
                        f", {ex['vcrpy_us'] / measured['promptcache_us']:,.0f}x promptcache's measured time"
                    )
                load = f"; loading the cassette ~{ex['load_s']:.0f} s" if ex["load_s"] else ""
                lines.append(
                    f"- {_replay.PATHS[path].label}: ~{ex['vcrpy_us'] / 1000:,.0f} ms per call "
                    f"({ex['us_per_recording']:.1f} µs per interaction in the cassette){versus}{load}."
                )
    startup = results.get("startup", [])
    if startup:
        lines += [
            "",
            "### Start-up",
            "",
            "`pytest -q -p no:cacheprovider TEST_FILE` (one empty test; or one whose module imports "
            "openai, as a user's does) with `-p no:promptcache` and with the plugin on a store of each "
            f"size; wall time per process, median of {startup[0]['runs']} interleaved runs after one "
            "warm-up each.",
            "",
            "| test file | recordings | without plugin | with plugin | added (median of pairs) "
            "| peak RSS without / with |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for row in startup:
            lines.append(
                f"| {row.get('kind', 'empty test')} | {row['size']:,} | {row['without_ms']:.0f} ms | "
                f"{row['with_ms']:.0f} ms | "
                f"+{row['added_ms']:.0f} ms | "
                f"{row['without_maxrss_mib']:.1f} / {row['with_maxrss_mib']:.1f} MiB |"
            )
        bd = results.get("startup_breakdown")
        if bd:
            imported = ", ".join(bd.get("modules_imported_after_configure", [])) or "none"
            lines += [
                "",
                "In-process, fresh interpreter, median ms: "
                + ", ".join(f"{k} {val:.1f}" for k, val in bd["median_ms"].items())
                + f". Imported once configured (of pydantic, httpx, httpx2, asyncio): {imported}.",
            ]
        it = results.get("import_time")
        if it:
            heavy = ", ".join(f"`{h['module']}` {h['cumulative_ms']:.1f}" for h in it["heaviest"][:10])
            lines += [
                "",
                f"`python -X importtime` after `import pytest`: the plugin module costs "
                f"{it['plugin_import_after_pytest_ms']:.1f} ms; heaviest (cumulative ms): {heavy}.",
            ]
    mem = results.get("memory", [])
    if mem:
        lines += [
            "",
            "### Peak memory",
            "",
            "Fresh process; everything imported first (`peak RSS before`), then the tool set up "
            "(pytest-promptcache's engine, or vcrpy loading its cassette) and N different recordings "
            "served once each through raw httpx2. Peak RSS (VmHWM) from a run without tracemalloc; "
            "tracemalloc's peak (what was allocated after the imports) from a second run, "
            "pytest-promptcache only.",
            "",
            "| tool | recordings | served | set-up | peak RSS before -> after | tracemalloc peak |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for row in mem:
            lines.append(
                f"| {row['tool']} | {row['size']:,} | {row['distinct']:,} | {row['setup_s']:.2f} s | "
                f"{row['maxrss_before_mib']:.1f} -> {row['maxrss_mib']:.1f} MiB | "
                f"{_f(row['tracemalloc_peak_mib'], '.1f', ' MiB')} |"
            )
    retention = results.get("memory_retention")
    if retention:
        lines += [
            "",
            f"What holds the memory after serving {retention['served']:,} different recordings (in-process, "
            f"tracemalloc): {retention['traced_mib']:.1f} MiB in all; dropping the session's call events "
            f"({retention['events']:,}, each holding its parsed recording) frees "
            f"{retention['held_by_call_events_mib']:.1f} MiB; emptying the memory tier "
            f"({retention['memory_tier_size']:,} entries) and the key memo frees "
            f"{retention['held_by_memory_tier_and_key_memo_mib']:.1f} MiB more.",
        ]
    fc = results.get("first_chunk", [])
    if fc:
        lines += [
            "",
            "## 3. Recording: first streamed chunk",
            "",
            "The fake provider (`tests/llm_server.py`) sends SSE chunks "
            f"{fc[0]['chunk_delay_ms']:.0f} ms apart (the first with the head); every call a new prompt, "
            "so in `record` mode each goes live through the tee and is saved at the end. Median of "
            f"{fc[0]['rounds']} alternating rounds; added = median of paired differences.",
            "",
            "| client | first chunk, no plugin | first chunk, recording | added | last chunk added |",
            "|---|---:|---:|---:|---:|",
        ]
        for row in fc:
            lines.append(
                f"| {row['path']} | {row['first_chunk_ms']['no plugin']:.2f} ms | "
                f"{row['first_chunk_ms']['promptcache record']:.2f} ms | "
                f"+{row['first_chunk_added_ms']:.2f} ms | "
                f"+{row['last_chunk_added_ms']:.2f} ms |"
            )
    misses = results.get("miss", [])
    if misses:
        lines += [
            "",
            "## Extra: a replay miss",
            "",
            "A request with no recording fails its test with the nearest recording and a diff. Here the "
            "first miss is the first ever against its store: it builds the miss index (every recording's "
            "request read once). Every later miss, in any session, ranks the recordings by the index and "
            "reads a handful; `benchmarks/bounds.py` measures a new session's first miss.",
            "",
            "| recordings | first miss | next miss | nearest found |",
            "|---:|---:|---:|---|",
        ]
        for row in misses:
            lines.append(
                f"| {row['size']:,} | {row['first_miss_s'] * 1000:,.1f} ms | "
                f"{row['next_miss_s'][0] * 1000:,.1f} ms | "
                f"{row['nearest'].removeprefix('nearest:').strip()[:40]}... |"
            )
        for row in results.get("miss_memory", []):
            lines.append(
                f"\n{row['size']:,} recordings, one miss in a fresh process: "
                f"{row['serve_s']:.1f} s, peak RSS {row['maxrss_before_mib']:.0f} -> "
                f"{row['maxrss_mib']:.0f} MiB."
            )
    bd = results.get("replay_breakdown")
    if bd:
        lines += [
            "",
            "## Extra: one warm replay, step by step (httpx2, timeit best of 5)",
            "",
            "| step | µs |",
            "|---|---:|",
        ]
        lines += [f"| {k} | {val:.2f} |" for k, val in bd.items()]
    for section, error in results.get("errors", {}).items():
        last = error.strip().splitlines()[-1]
        lines += ["", f"**Section `{section}` failed**: `{last}` (traceback in results.json)."]
    lines += ["", "## What was compared", "", *NOTES]
    return "\n".join(lines) + "\n"


NOTES = [
    "- Everything runs in one process per section; per-call variants alternate in rotating order "
    "round by round, so drifts of this noisy machine hit all alike; medians of paired ratios/differences.",
    "- vcrpy 9.4 patches **httpx2** as well as httpx (`vcr/patch.py`, `_httpx2`), so the SDK comparison is "
    "the real openai 3.x SDK on its default httpx2 client for all three variants. openai 3.x also accepts "
    "an httpx 0.28 `http_client`; that path is measured too (`openai SDK on httpx 0.28`).",
    "- vcrpy as pytest-recording configures it: YAML cassette, record mode `none`, plus body matching and "
    "`allow_playback_repeats` so one cassette can serve repeated calls. Each size is one cassette with "
    "that many interactions (pytest-recording's cassettes are per test; the scan is over the cassette in "
    "use). The cassette is loaded once per size, outside the timings (its load time is reported).",
    "- Recordings: two templates are recorded for real through the openai SDK against the loopback fake "
    "provider, by both tools; the others are the template with a fixed-width index in the prompt (and the "
    "echoed answer), and for pytest-promptcache the key recomputed. Prompt ~780 bytes, answer ~840 bytes, "
    "streamed answer ~55 SSE events.",
    "- Start-up and memory use fresh processes; the store is not read at start-up (nothing is scanned).",
]


if __name__ == "__main__":
    data = json.loads(Path(sys.argv[1]).read_text(encoding="utf-8"))
    data["targets"] = targets(data)
    print(markdown(data))
