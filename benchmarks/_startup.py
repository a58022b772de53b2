"""Start-up time (pytest with and without the plugin), import cost, and peak memory, each in fresh
subprocesses so one measurement cannot warm another's caches of Python objects."""

from __future__ import annotations

import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


# Bytecode caches for the child processes. This environment sets PYTHONDONTWRITEBYTECODE, so without
# this every child would compile the plugin (and anything else without a cache) from source, which no
# installed package does; a separate prefix also leaves the source tree untouched.
PYCACHE = Path(tempfile.gettempdir()) / "promptcache-bench-pycache"


def _clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "PROMPTCACHE_"))}
    env.pop("GITHUB_STEP_SUMMARY", None)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(PYCACHE)
    return env


# ``python -m pytest``, plus one line with the process's own peak RSS (VmHWM) at exit: ``ru_maxrss``
# of a child is useless here, as Linux carries the parent's over across fork and exec.
PYTEST = (
    "import atexit, sys, pytest\n"
    "def hwm():\n"
    "    for line in open('/proc/self/status'):\n"
    "        if line.startswith('VmHWM:'):\n"
    "            print('VmHWM', line.split()[1])\n"
    "atexit.register(hwm)\n"
    "sys.argv[0] = 'pytest'\n"
    "sys.exit(pytest.console_main())\n"
)


def _run_timed(cmd: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, int, int]:
    """Wall seconds, exit code and peak RSS (KiB) of one child process."""
    started = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, check=False)
    elapsed = time.perf_counter() - started
    output = proc.stdout.decode(errors="replace") + proc.stderr.decode(errors="replace")
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{output}")
    hwm = [int(line.split()[1]) for line in output.splitlines() if line.startswith("VmHWM ")]
    return elapsed, proc.returncode, hwm[-1] if hwm else 0


TEST_FILES = {
    # The plugin's own cost, nothing shared with the suite.
    "empty test": "def test_nothing():\n    assert True\n",
    # A typical user of the plugin: a test module that imports the openai SDK (which imports pydantic
    # and httpx2 itself, so the plugin no longer pays for them alone).
    "test module importing openai": "import openai\n\n\ndef test_nothing():\n    assert openai\n",
    # The empty test with respx's pytest plugin disabled in both runs: respx (a dev dependency) imports
    # httpx at start-up, before pytest-promptcache is configured, so the plugin patches it at once.
    "empty test, -p no:respx": "def test_nothing():\n    assert True\n",
}
EXTRA_ARGS = {"empty test, -p no:respx": ["-p", "no:respx"]}


def startup_project(workdir: Path, kind: str) -> tuple[Path, str]:
    project = workdir / "startup-project"
    project.mkdir(parents=True, exist_ok=True)
    (project / "pytest.ini").write_text("[pytest]\n")
    name = "test_openai.py" if "openai" in kind else "test_trivial.py"
    (project / name).write_text(TEST_FILES[kind])
    return project, name


def pytest_startup(
    workdir: Path,
    stores: dict[int, Path],
    runs: int,
    log: Callable[[str], None],
    kind: str = "empty test",
) -> list[dict[str, Any]]:
    """``pytest`` on one test: ``-p no:promptcache`` against the plugin loaded on a store of each size,
    runs interleaved, medians reported. Both load every other installed plugin alike."""
    project, test_file = startup_project(workdir, kind)
    env = _clean_env()
    base = [
        sys.executable,
        "-c",
        PYTEST,
        "-q",
        "-p",
        "no:cacheprovider",
        *EXTRA_ARGS.get(kind, []),
        test_file,
    ]
    results = []
    for size, store in stores.items():
        variants = {
            "without": [*base, "-p", "no:promptcache"],
            # --promptcache-dir only parses when the plugin is loaded: the run itself proves it is.
            "with": [*base, f"--promptcache-dir={store}"],
        }
        envs = {"without": env, "with": env}
        # One unmeasured run each: the first import of a module tree pays for the OS file cache.
        for name, cmd in variants.items():
            _run_timed(cmd, project, envs[name])
        times: dict[str, list[float]] = {name: [] for name in variants}
        rss: dict[str, list[int]] = {name: [] for name in variants}
        for r in range(runs):
            for name in list(variants)[:: 1 if r % 2 == 0 else -1]:
                elapsed, _, maxrss = _run_timed(variants[name], project, envs[name])
                times[name].append(elapsed)
                rss[name].append(maxrss)
        paired = [w - wo for w, wo in zip(times["with"], times["without"], strict=True)]
        row: dict[str, Any] = {
            "size": size,
            "kind": kind,
            "runs": runs,
            "without_ms": statistics.median(times["without"]) * 1000,
            "with_ms": statistics.median(times["with"]) * 1000,
            "added_ms": statistics.median(paired) * 1000,
            "without_rounds_ms": [round(t * 1000, 1) for t in times["without"]],
            "with_rounds_ms": [round(t * 1000, 1) for t in times["with"]],
            "without_maxrss_mib": statistics.median(rss["without"]) / 1024,
            "with_maxrss_mib": statistics.median(rss["with"]) / 1024,
        }
        log(
            f"    pytest start-up ({kind}), {size:>7} recordings: without {row['without_ms']:7.1f} ms  "
            f"with {row['with_ms']:7.1f} ms  added {row['added_ms']:6.1f} ms"
        )
        results.append(row)
    return results


BREAKDOWN = """
import json, sys, time
from pathlib import Path
t0 = time.perf_counter()
import pytest
t1 = time.perf_counter()
import pytest_promptcache.plugin
t2 = time.perf_counter()
from pytest_promptcache.clients import install, uninstall
from pytest_promptcache.settings import build_settings
settings = build_settings(rootdir=Path(sys.argv[1]), cli_mode=None, cli_dir=sys.argv[1], env={}, ini={})
t3 = time.perf_counter()
# What pytest_configure builds: a session (the engine comes with the first LLM call).
from pytest_promptcache.session import CacheSession
source = CacheSession(settings)
t4 = time.perf_counter()
install(source)
t5 = time.perf_counter()
uninstall(source)
print(json.dumps({
    "import pytest": t1 - t0,
    "import pytest_promptcache.plugin": t2 - t1,
    "build_settings": t3 - t2,
    "CacheSession(settings)": t4 - t3,
    "install": t5 - t4,
    "modules imported": sorted(m for m in ("pydantic", "httpx", "httpx2", "asyncio") if m in sys.modules),
}))
"""


def configure_breakdown(runs: int) -> dict[str, Any]:
    """What the plugin's import and ``pytest_configure`` steps cost, timed inside fresh interpreters."""
    samples: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="promptcache-bench-cfg-") as tmp:
        for _ in range(runs + 1):  # the first fills the bytecode cache and is dropped
            proc = subprocess.run(
                [sys.executable, "-c", BREAKDOWN, tmp],
                capture_output=True,
                text=True,
                env=_clean_env(),
                check=True,
                cwd=tmp,
            )
            samples.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    samples = samples[1:]
    steps = [k for k, v in samples[0].items() if isinstance(v, float)]
    return {
        "runs": runs,
        "median_ms": {k: round(statistics.median(s[k] for s in samples) * 1000, 1) for k in steps},
        "modules_imported_after_configure": samples[0]["modules imported"],
    }


def import_times(top: int = 12) -> dict[str, Any]:
    """``python -X importtime``: what importing the plugin module costs, and the modules that cost most
    (cumulative µs). pytest is imported first, so the plugin's own share is what is left."""
    code = "import pytest; import pytest_promptcache.plugin"
    cwd = tempfile.gettempdir()
    subprocess.run([sys.executable, "-c", code], env=_clean_env(), cwd=cwd, check=True)  # fill the cache
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code],
        capture_output=True,
        text=True,
        env=_clean_env(),
        cwd=cwd,
        check=True,
    )
    rows: list[tuple[int, int, str]] = []
    for line in proc.stderr.splitlines():
        m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|(\s*)(\S+)", line)
        if m:
            rows.append((int(m.group(2)), len(m.group(3)), m.group(4)))
    # Top-level imports (least indentation) of everything after pytest.
    try:
        start = next(i for i, row in enumerate(rows) if row[2] == "pytest") + 1
    except StopIteration:
        start = 0
    after = rows[start:]
    min_indent = min((r[1] for r in after), default=1)
    top_level = [(us, name) for us, indent, name in after if indent == min_indent]
    total = sum(us for us, _ in top_level)
    # Biggest modules anywhere below the plugin, to say where the time goes.
    biggest = sorted(((us, name) for us, _, name in after), reverse=True)
    seen: list[dict[str, Any]] = []
    for us, name in biggest:
        if len(seen) >= top:
            break
        seen.append({"module": name, "cumulative_ms": round(us / 1000, 1)})
    return {"plugin_import_after_pytest_ms": round(total / 1000, 1), "heaviest": seen}


def memory(
    tool: str,
    store: Path,
    size: int,
    distinct: int,
    workdir: Path,
    base_url: str,
    extra: list[str] | None = None,
) -> dict[str, Any]:
    """Run the memory worker in a fresh interpreter and return its report."""
    cmd = [
        sys.executable,
        str(HERE / "_memory_worker.py"),
        tool,
        str(store),
        str(size),
        str(distinct),
        str(workdir),
        base_url,
        *(extra or []),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=_clean_env(), check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"memory worker failed:\n{proc.stdout}\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]
