"""A broken recording fails only the tests that need it, names itself, and is never overwritten."""

from __future__ import annotations

import json

import pytest
from conftest import Suite

TWO_TESTS = """
from conftest import ask

def test_one(oai0):
    ask(oai0, "first")

def test_two(oai0):
    ask(oai0, "second")
"""


def _break_first(suite: Suite, how: str) -> tuple[str, str]:
    recordings = suite.recordings()
    key = next(k for k, d in recordings.items() if d["meta"]["test"].endswith("test_one"))
    path = suite.cassettes / f"{key}.json"
    data = json.loads(path.read_text())
    if how == "truncated":
        text = path.read_text()[:100]
    elif how == "future":
        data["schema_version"] = 99
        text = json.dumps(data)
    else:
        del data["response"]["status"]
        text = json.dumps(data)
    path.write_text(text)
    return key, text


@pytest.mark.parametrize(
    ("how", "reason"),
    [
        ("truncated", "not valid JSON*"),
        ("future", "schema_version 99 is not one this version of * knows (1, 2, 3, 4); upgrade*"),
        ("schema", "does not match the recording schema at response.status: Field required*"),
    ],
)
@pytest.mark.parametrize("mode", ["replay", "record"])
def test_broken_file_fails_only_its_test_and_is_left_untouched(
    clients: Suite, how: str, reason: str, mode: str
) -> None:
    clients.pytester.makepyfile(TWO_TESTS)
    clients.run("--promptcache=record").assert_outcomes(passed=2)
    key, text = _break_first(clients, how)
    clients.server.stop()

    result = clients.run(f"--promptcache={mode}")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*_ test_one _*",
            f"promptcache: recording {clients.cassettes / key}.json is unusable: {reason}",
            "It was left untouched: fix it by hand, or delete it and record again "
            "(pytest --promptcache=record), or overwrite it with --promptcache=rewrite.",
        ]
    )
    assert (clients.cassettes / f"{key}.json").read_text() == text


def test_rewrite_replaces_a_broken_file(clients: Suite) -> None:
    clients.pytester.makepyfile(TWO_TESTS)
    clients.run("--promptcache=record").assert_outcomes(passed=2)
    key, _ = _break_first(clients, "truncated")
    clients.run("--promptcache=rewrite", "-k", "test_one").assert_outcomes(passed=1, deselected=1)
    assert clients.recordings()[key]["response"]["status"] == 200
    clients.run().assert_outcomes(passed=2)
