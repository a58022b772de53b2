"""The README's ten-line quickstart runs as written: its test file, taken from the README itself, is
recorded once against the loopback server (keyed as api.openai.com through a host alias), then replayed
in a fresh interpreter with no key, no base URL and no configuration, as CI would run it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from conftest import Suite

README = Path(__file__).resolve().parents[1] / "README.md"


def quickstart() -> str:
    """The first Python block after the README's "Ten lines" heading, as it is written there."""
    text = README.read_text(encoding="utf-8")
    section = text[text.index("\n## Ten lines\n") :]
    found = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert found is not None, "README: no Python block under 'Ten lines'"
    return found.group(1)


def test_the_quickstart_is_ten_lines_of_plain_openai() -> None:
    code = quickstart()
    assert len([line for line in code.splitlines() if line.strip()]) <= 10
    assert "openai.OpenAI()" in code
    assert "promptcache" not in code.replace("pytest-promptcache", "")


@pytest.mark.slow  # a fresh interpreter importing openai
def test_the_readme_quickstart_replays_with_no_key_as_written(
    suite: Suite, monkeypatch: pytest.MonkeyPatch
) -> None:
    suite.pytester.makepyfile(test_app=quickstart())
    # Recording: the key, and the loopback server standing in for api.openai.com.
    monkeypatch.setenv("OPENAI_BASE_URL", suite.server.url + "/v1")
    suite.pytester.makeini("[pytest]\npromptcache_host_aliases =\n    127.0.0.1:* = api.openai.com\n")
    suite.run("--promptcache=record").assert_outcomes(passed=1)
    [recording] = suite.recordings().values()
    assert recording["request"]["host"] == "api.openai.com"
    assert recording["request"]["path"] == "/v1/chat/completions"

    # Replay as a newcomer's CI runs it: no key, no base URL, no ini, the server gone.
    (suite.path / "tox.ini").unlink()
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "PROMPTCACHE_MODE"):
        monkeypatch.delenv(name, raising=False)
    sent = suite.server.count()
    suite.server.stop()
    result = suite.run(subprocess=True)
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["mode replay: 1 LLM call: 1 replayed"])
    assert suite.server.count() == sent == 1
