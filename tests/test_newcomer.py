"""A newcomer's first hour, end to end: what pytest and the command say when one follows the README and
gets things slightly wrong. Each test runs the plugin as a user would (pytester, the loopback server, the
real SDKs, the real command in a subprocess)."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator

import pytest
from conftest import Suite

from pytest_promptcache.cli import main

TWO_CALLS = """
from conftest import ask

def test_a(oai0):
    ask(oai0, "first question")

def test_b(oai0):
    ask(oai0, "second question")
"""

CAUGHT = """
import openai
from conftest import ask

def ask_or_not(client, text, model="gpt-4.1-mini"):
    try:
        return ask(client, text, model=model)
    except openai.APIError:
        return None  # the code under test degrades gracefully: the test passes either way

def test_fine(oai0):
    ask_or_not(oai0, "this one works")

def test_broken(oai0):
    ask_or_not(oai0, "this one fails", model="fault-500")
"""


def report(suite: Suite, name: str = "r.json") -> dict[str, object]:
    data: dict[str, object] = json.loads((suite.path / name).read_text(encoding="utf-8"))
    return data


# -- item 8: a record run that saved nothing -----------------------------------------------------------


def test_a_record_run_with_the_api_down_fails_though_every_test_passed(clients: Suite) -> None:
    clients.pytester.makepyfile(CAUGHT.replace('model="fault-500"', 'model="gpt-4.1-mini"'))
    clients.server.stop()
    result = clients.run("--promptcache=record", "--promptcache-report=r.json")
    result.assert_outcomes(passed=2)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(
        [
            "mode record: 2 LLM calls: 2 live (2 failed)",
            "nothing was saved: this record run made 2 live calls and recorded none of them, so they will "
            "miss in replay; the run fails",
            "  2 calls: transport error: ConnectError(*Connection refused*)",
            "Check that the API is reachable and its key is set, then record again.",
        ]
    )
    not_saved = report(clients)["not_saved"]
    assert isinstance(not_saved, list)
    reasons = [entry["reason"] for entry in not_saved]
    assert len(reasons) == 2
    assert all("Connection refused" in reason for reason in reasons)


def test_a_record_run_that_saved_some_passes_and_names_what_it_could_not_save(clients: Suite) -> None:
    clients.pytester.makepyfile(CAUGHT)
    result = clients.run("--promptcache=record", "--promptcache-report=r.json")
    result.assert_outcomes(passed=2)
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(
        [
            "mode record: 2 LLM calls: 2 live (1 recorded, 1 failed)",
            "1 live call was not saved, so it will miss in replay:",
            "  1 call: HTTP 500",
        ]
    )
    assert "nothing was saved" not in result.stdout.str()
    not_saved = report(clients)["not_saved"]
    assert isinstance(not_saved, list)
    assert [(u["reason"], u["test"].rsplit("::", 1)[1]) for u in not_saved] == [("HTTP 500", "test_broken")]


# -- item 7: the summary after pruning -----------------------------------------------------------------


@pytest.mark.slow
def test_after_pruning_the_summary_lists_what_was_deleted_and_no_longer_calls_it_unused(
    clients: Suite,
) -> None:
    clients.pytester.makeini("[pytest]\npromptcache_dir = cassettes\n")
    clients.pytester.makepyfile(test_suite=TWO_CALLS)
    clients.run("--promptcache=record").assert_outcomes(passed=2)
    (gone,) = [key for key, rec in clients.recordings().items() if rec["meta"]["test"].endswith("::test_b")]
    clients.pytester.makepyfile(test_suite=TWO_CALLS.split("def test_b", maxsplit=1)[0])

    pruned = clients.run("-v", "--promptcache-prune", "--promptcache-report=r.json")
    assert pruned.ret == pytest.ExitCode.OK
    pruned.stdout.fnmatch_lines(
        ["pruned 1 unused recording (--promptcache-prune):", f"  deleted {gone}.json"]
    )
    out = pruned.stdout.str()
    assert "unused by this run" not in out
    assert "unused: " not in out
    assert report(clients)["pruned_recordings"] == [gone]
    assert gone not in clients.recordings()

    again = clients.run("--promptcache-prune", "--promptcache-report=r.json")
    again.stdout.fnmatch_lines(["--promptcache-prune: no unused recordings to delete"])
    assert report(clients)["pruned_recordings"] == []


# -- item 9: no configuration file ---------------------------------------------------------------------


NO_CONFIG = "promptcache: no pytest configuration file, so the recordings directory ({}) moves with"


def test_without_a_configuration_file_the_summary_warns_that_the_directory_moves(
    clients: Suite, monkeypatch: pytest.MonkeyPatch
) -> None:
    clients.pytester.makepyfile(test_one=TWO_CALLS.split("def test_b", maxsplit=1)[0])
    recorded = clients.run("--promptcache=record")
    recorded.assert_outcomes(passed=1)
    recorded.stdout.fnmatch_lines([NO_CONFIG.format(clients.cassettes) + "*sets promptcache_dir*"])

    # Started one directory down, pytest takes that as its rootdir: the recordings are not found there.
    sub = clients.path / "sub"
    sub.mkdir()
    for name in ("test_one.py", "conftest.py"):
        (clients.path / name).rename(sub / name)
    monkeypatch.chdir(sub)
    moved = clients.run()
    moved.assert_outcomes(failed=1)
    moved.stdout.fnmatch_lines(
        [f"  cassettes: {sub / 'cassettes'}", NO_CONFIG.format(sub / "cassettes") + "*"]
    )


@pytest.mark.slow
def test_with_a_configuration_file_there_is_no_warning_and_the_directory_stays(
    clients: Suite, monkeypatch: pytest.MonkeyPatch
) -> None:
    clients.pytester.makepyprojecttoml('[tool.pytest.ini_options]\npromptcache_dir = "cassettes"\n')
    tests = clients.path / "tests"
    tests.mkdir()
    (tests / "test_one.py").write_text(TWO_CALLS.split("def test_b", maxsplit=1)[0], encoding="utf-8")
    (tests / "conftest.py").write_text((clients.path / "conftest.py").read_text(encoding="utf-8"))
    recorded = clients.run("--promptcache=record")
    recorded.assert_outcomes(passed=1)
    assert "no pytest configuration file" not in recorded.stdout.str()
    monkeypatch.chdir(tests)
    clients.server.stop()
    replayed = clients.run()
    replayed.assert_outcomes(passed=1)
    assert "no pytest configuration file" not in replayed.stdout.str()
    assert len(list(clients.cassettes.glob("*.json"))) == 1


# -- item 10: --markers, --help and typed ini values ---------------------------------------------------


def test_markers_and_help_say_what_each_option_takes(pytester: pytest.Pytester) -> None:
    quiet = ("-o", "asyncio_default_fixture_loop_scope=function")  # pytest-asyncio warns otherwise
    markers = pytester.runpytest_inprocess("--markers", *quiet)
    line = next(line for line in markers.outlines if line.startswith("@pytest.mark.promptcache("))
    assert line.startswith(
        "@pytest.mark.promptcache(mode=..., scope=..., normalize=[...], ignore_fields=[...]): "
    )
    assert "mode (replay, record, rewrite, off)" in line
    usage = pytester.runpytest_inprocess("--help", *quiet)
    usage.stdout.fnmatch_lines_random(
        [
            "  promptcache_memory_size (int):*",
            "  promptcache_record_rpm (int):*",
            "  promptcache_budget (float):*",
            "  promptcache_flight_timeout (float):*",
            "  promptcache_guard (bool):*",
            "  promptcache_max_recording_size (string):*",
            "  promptcache_endpoints (linelist):*",
        ]
    )


def test_a_value_of_the_wrong_type_is_one_line_naming_the_option(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_nothing():\n    pass\n")
    result = pytester.runpytest_inprocess(
        "-o", "promptcache_record_rpm=fast", "-o", "asyncio_default_fixture_loop_scope=function"
    )
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["ERROR: pytest-promptcache: ini promptcache_record_rpm: *'fast'*; write a whole number such as 500"]
    )
    assert "Traceback" not in result.stderr.str()


def test_toml_numbers_and_booleans_are_read_as_written(clients: Suite) -> None:
    # Native TOML: a budget of 0 is a budget (no live call may go out), not "no budget", and typed values
    # are not the deprecated non-string values a string option would warn about.
    clients.pytester.makepyprojecttoml(
        "[tool.pytest]\n"
        "promptcache_budget = 0\n"
        "promptcache_memory_size = 16\n"
        "promptcache_placeholder_keys = false\n"
        "asyncio_default_fixture_loop_scope = 'function'\n"
    )
    clients.pytester.makepyfile(TWO_CALLS.split("def test_b", maxsplit=1)[0])
    result = clients.run("--promptcache=record")
    result.assert_outcomes(failed=1)
    assert "PytestDeprecationWarning" not in result.stdout.str() + result.stderr.str()
    result.stdout.fnmatch_lines(
        ["*budget reached, live call refused*", "budget of $0.00 reached: 1 live call refused"]
    )
    assert clients.server.count() == 0


# -- item 11: the command in a pipe --------------------------------------------------------------------


@pytest.fixture
def recorded(clients: Suite) -> Suite:
    clients.pytester.makeini("[pytest]\npromptcache_dir = cassettes\n")
    clients.pytester.makepyfile(TWO_CALLS)
    clients.run("--promptcache=record").assert_outcomes(passed=2)
    return clients


def test_ls_json_into_a_reader_that_left_exits_0(recorded: Suite) -> None:
    # As `promptcache ls --json | head -0` would: the reader is gone before the command writes.
    process = subprocess.Popen(
        [sys.executable, "-m", "pytest_promptcache", "ls", "--json"],
        cwd=recorded.path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert process.stdout is not None
    process.stdout.close()
    _, err = process.communicate(timeout=60)
    assert (process.returncode, err.decode()) == (0, "")


@contextlib.contextmanager
def reader_gone(buffering: int) -> Iterator[None]:
    """Standard output is a real pipe whose reader has closed its end: line-buffered, the first line written
    meets it inside the command (as a long listing does once it fills the buffer); block-buffered, the
    command's last flush does. Set inside the test: pytest's capture replaces sys.stdout at each phase."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    real = sys.stdout
    with open(write_end, "w", buffering=buffering, encoding="utf-8") as pipe:
        sys.stdout = pipe
        try:
            yield
        finally:
            sys.stdout = real
            with contextlib.suppress(OSError):
                pipe.flush()


def test_the_command_keeps_its_own_status_when_its_reader_leaves(
    recorded: Suite, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(recorded.path)
    # What it found, not that the pipe closed: 0 for a listing, 1 when verify finds a problem.
    for buffering in (1, -1):
        for argv in (["ls"], ["ls", "--json"], ["stats"], ["verify"]):
            with reader_gone(buffering):
                status = main(argv)
            assert status == 0, (argv, buffering)
    (recorded.cassettes / "broken.json").write_text("{", encoding="utf-8")
    for buffering in (1, -1):
        with reader_gone(buffering):
            status = main(["verify"])
        assert status == 1, buffering
