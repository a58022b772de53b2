"""Four record runs at once over two checkouts, as CI machines sharing one Redis: each run has its own
state directory and machine name, so only Redis can coordinate them (single flight, pacing, budget)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import CLIENTS_CONFTEST, FAKE_SECRETS, Suite
from redis_server import RedisServer, checkout, module_redis, redis_server

__all__ = ["module_redis", "redis_server"]

RUNS = 4
# Every run waits here until all four are ready, so they overlap instead of finishing one by one while
# the next is still importing its SDK.
BARRIER = """
import os, pathlib, time
import pytest

@pytest.fixture(scope="session", autouse=True)
def start_together():
    here = pathlib.Path(__file__).parent
    (here.parent / f"ready-{os.environ['RUN']}").touch()
    deadline = time.monotonic() + 120
    while not (here.parent / "go").exists():
        assert time.monotonic() < deadline, "the other runs never got ready"
        time.sleep(0.01)
"""


def prompts_file(prompts: list[str], model: str) -> str:
    lines = ["from conftest import ask"]
    for i, prompt in enumerate(prompts):
        lines += [f"def test_{i}(oai0):", f"    assert ask(oai0, {prompt!r}, model={model!r}).choices"]
    return "\n".join(lines) + "\n"


class FleetRuns:
    def __init__(self, suite: Suite, redis: RedisServer, ini: str) -> None:
        self.suite = suite
        self.redis = redis
        self.root = suite.path
        self.checkouts = [checkout(self.root, name, ini) for name in ("a", "b")]
        for path in self.checkouts:
            (path / "conftest.py").write_text(CLIENTS_CONFTEST + BARRIER)

    def run(
        self, files: list[str], *args: str, run_id: str | None = None
    ) -> list[subprocess.CompletedProcess[str]]:
        """Run ``files[i]`` as run i, all at once; run i uses checkout i % 2 and state directory i."""
        procs = []
        for i, source in enumerate(files):
            path = self.checkouts[i % 2]
            (path / f"test_run{i}.py").write_text(source)
            env = {
                **os.environ,
                **FAKE_SECRETS,
                "LLM_URL": self.suite.server.url,
                "PROMPTCACHE_SHARED": self.redis.url,
                "PROMPTCACHE_MACHINE": f"ci-{i}",
                "RUN": str(i),
            }
            env.pop("PROMPTCACHE_MODE", None)
            if run_id is not None:
                env["PROMPTCACHE_RUN_ID"] = run_id
            command = [
                sys.executable,
                "-m",
                "pytest",
                "-p",
                "no:cacheprovider",
                "-o",
                "asyncio_default_fixture_loop_scope=function",
                "-o",
                f"promptcache_state_dir=state-{i}",
                "--promptcache=record",
                f"--promptcache-report=report-{i}.json",
                f"test_run{i}.py",
                *args,
            ]
            procs.append(
                subprocess.Popen(
                    command, cwd=path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
                )
            )
        deadline = time.monotonic() + 120
        while len(list(self.root.glob("ready-*"))) < len(files) and time.monotonic() < deadline:
            if any(p.poll() is not None for p in procs):
                break
            time.sleep(0.01)
        (self.root / "go").touch()
        done = []
        for proc in procs:
            out, _ = proc.communicate(timeout=240)
            done.append(subprocess.CompletedProcess(proc.args, proc.returncode, out))
        for path in self.root.glob("ready-*"):
            path.unlink()
        (self.root / "go").unlink()
        return done

    def report(self, i: int) -> dict[str, Any]:
        return json.loads((self.checkouts[i % 2] / f"report-{i}.json").read_text())  # type: ignore[no-any-return]

    def files(self, path: Path) -> set[str]:
        return {p.stem for p in (path / "cassettes").glob("*.json")}


@pytest.mark.slow  # four pytest processes at once, each importing the openai SDK
def test_four_runs_make_one_live_call_per_distinct_request(clients: Suite, redis_server: RedisServer) -> None:
    runs = FleetRuns(clients, redis_server, "")
    distinct = [f"shared prompt {n}" for n in range(8)]
    # Every run asks for every prompt, each in its own order, and each call is slow (0.3 s at the
    # server): runs meet identical calls in flight on other machines all the time.
    files = [
        prompts_file(distinct[i * 2 :] + distinct[: i * 2], "gpt-4.1-mini+fault-slow") for i in range(RUNS)
    ]
    done = runs.run(files)
    for result in done:
        assert result.returncode == 0, result.stdout[-3000:]
    assert clients.server.count("/chat/completions") == len(distinct)
    reports = [runs.report(i) for i in range(RUNS)]
    assert sum(r["totals"]["recorded"] for r in reports) == len(distinct)
    assert sum(r["totals"]["replayed"] for r in reports) == RUNS * len(distinct) - len(distinct)
    # Recorded somewhere, every recording is in both checkouts (copied from Redis where not made there).
    for path in runs.checkouts:
        assert len(runs.files(path)) == len(distinct)
    assert runs.files(runs.checkouts[0]) == runs.files(runs.checkouts[1])
    made_by = {m for r in reports for m in r["shared"]["recorded_by_machine"]}
    assert made_by <= {f"ci-{i}" for i in range(RUNS)}
    assert all(not r["shared"]["notices"] for r in reports)


@pytest.mark.slow  # paced to 300 requests a minute: six seconds of requests
def test_a_shared_rpm_limit_holds_across_four_runs(clients: Suite, redis_server: RedisServer) -> None:
    rpm, per_run = 300, 8
    runs = FleetRuns(clients, redis_server, f"promptcache_record_rpm = {rpm}\n")
    files = [
        prompts_file([f"run {i} prompt {n}" for n in range(per_run)], "gpt-4.1-mini") for i in range(RUNS)
    ]
    for result in runs.run(files):
        assert result.returncode == 0, result.stdout[-3000:]
    arrivals = sorted(r.received_at for r in clients.server.requests)
    assert len(arrivals) == RUNS * per_run
    # Four unpaced runs would send at several times the limit. Paced as one, the fleet's rate over the
    # whole run stays within 5% of it (above it only by the scheduling jitter of the first and last).
    achieved = (len(arrivals) - 1) * 60 / (arrivals[-1] - arrivals[0])
    assert achieved <= rpm * 1.05, achieved


@pytest.mark.slow  # four pytest processes at once, each importing the openai SDK
def test_a_shared_budget_stops_all_four_runs(clients: Suite, redis_server: RedisServer) -> None:
    # Each call costs a known amount: one dollar per input token (the fake server counts words).
    runs = FleetRuns(clients, redis_server, "promptcache_prices = fleet-model input=1000000 output=0\n")
    budget = 10.0
    files = [prompts_file([f"run{i} p{n}" for n in range(10)], "fleet-model") for i in range(RUNS)]
    done = runs.run(files, f"--promptcache-budget={budget}", run_id="ci-run-42")
    reports = [runs.report(i) for i in range(RUNS)]
    costs = [
        call_cost
        for r in reports
        for call_cost in [r["by_model"]["fleet-model"]["spent_usd"] / max(r["totals"]["live"], 1)]
        if r["totals"]["live"]
    ]
    per_call = max(costs)
    spent = sum(r["totals"]["spent_usd"] for r in reports)
    for result, report in zip(done, reports, strict=True):
        assert result.returncode == 1, result.stdout[-3000:]  # the budget failed every run
        assert report["budget"]["blocked_calls"] >= 1
        assert "budget of $10" in result.stdout
        assert "run ci-run-42: $" in result.stdout
    # The fleet spent the budget once, not once per machine: at most one call per run was in flight
    # when the last one crossed it.
    assert budget <= spent < budget + RUNS * per_call
    assert float(redis_server.client().get("promptcache:run:ci-run-42:spend") or 0) == pytest.approx(spent)
    assert all(r["shared"]["run_spent_usd"] >= budget for r in reports)
