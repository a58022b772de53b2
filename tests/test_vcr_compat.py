"""Suites written for vcrpy / pytest-recording run as they are: with pytest-recording disabled, their
marked tests are served from their cassettes through the engine (ordered, matched as vcr matches, a
drifted body shown), and after ``promptcache import vcr`` from recordings alone. Ordered scopes without
vcr too (``promptcache_scope = test``)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import vcr  # noqa: F401  (imported once here: each pytester run would import it again, ~0.3 s)
from conftest import SUITES, Suite

from pytest_promptcache.cli import main
from pytest_promptcache.plugin.vcr_compat import LEFT_TO_RECORDING

SAMPLE_TESTS = 23
SAMPLE_CALLS = 29  # 28 interactions; one test is answered by another test's cassette
NO_RECORDING = ("-p", "no:recording")


@pytest.fixture
def sample(suite: Suite) -> Suite:
    """The sample suite written for pytest-recording, with its committed cassettes."""
    source = SUITES / "vcr_suite"
    for path in source.rglob("*"):
        if path.is_file() and "__pycache__" not in path.parts:
            target = suite.path / path.relative_to(source)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(path, target)
    return suite


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))


def test_the_sample_suite_passes_unchanged_on_its_cassettes(sample: Suite) -> None:
    result = sample.run(*NO_RECORDING, "--promptcache-report=r.json")
    result.assert_outcomes(passed=SAMPLE_TESTS)
    result.stdout.fnmatch_lines([f"mode replay: {SAMPLE_CALLS} LLM calls: {SAMPLE_CALLS} replayed"])
    report = json.loads((sample.path / "r.json").read_text())
    # Priced like any replay: the cassettes carried usage.
    assert report["totals"]["saved_usd"] > 0
    assert report["by_test"]["test_openai.py::test_polling_gets_three_answers"]["replayed"] == 3
    assert "PromptcacheWarning" not in result.stdout.str()
    assert not list(sample.cassettes.glob("*.json"))  # replay writes nothing


@pytest.mark.slow  # three runs of the whole sample suite and an import: the demonstration
def test_the_sample_suite_passes_on_its_cassettes_then_imported_in_native_mode(
    sample: Suite, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    sample.run(*NO_RECORDING).assert_outcomes(passed=SAMPLE_TESTS)

    # A fresh trace id in one test's query: keyed without it once ids are normalised.
    ini = sample.path / "pytest.ini"
    ini.write_text(ini.read_text() + "promptcache_normalize = hex-id\n")
    monkeypatch.chdir(sample.path)
    assert main(["import", "vcr", "cassettes", "--serializer", "vcr_sample:serializer"]) == 0
    out = capsys.readouterr().out
    assert "read 28 interactions from 22 cassettes; wrote 28 recordings to cassettes" in out
    assert "3 of them scoped to their cassette" in out  # the three answers to one polled request
    rules = out[out.index("promptcache_endpoints =") :].splitlines()
    assert [line.strip() for line in rules] == [
        "promptcache_endpoints =",
        "defaults",
        "127.0.0.1/files/cat.png",
    ]
    # Recordings and cassettes together: a test's own recordings answer first, the cassette still counts
    # its plays (the test that reads vcr's counts passes).
    sample.run(*NO_RECORDING).assert_outcomes(passed=SAMPLE_TESTS)

    ini.write_text(ini.read_text() + "promptcache_vcr = native\n" + "\n".join(rules) + "\n")
    result = sample.run(*NO_RECORDING)
    result.assert_outcomes(passed=SAMPLE_TESTS)
    result.stdout.fnmatch_lines([f"mode replay: {SAMPLE_CALLS} LLM calls: {SAMPLE_CALLS} replayed"])

    # Not one byte of the cassettes is read any more: they can go.
    shutil.rmtree(sample.cassettes / "test_openai")
    shutil.rmtree(sample.cassettes / "test_anthropic")
    sample.run(*NO_RECORDING).assert_outcomes(passed=SAMPLE_TESTS)
    capsys.readouterr()
    assert main(["verify"]) == 0, capsys.readouterr().out  # schema, keys, no secrets


def test_a_body_that_drifted_from_its_cassette_warns_with_a_diff_or_fails_when_asked(sample: Suite) -> None:
    # vcr matches on method and URL: the old answer is served for a changed prompt, and nobody notices.
    edit(sample.path / "test_openai.py", 'ask(oai, "Say hello").choices', 'ask(oai, "Say goodbye").choices')
    only = ("-k", "test_chat and not stream and not system and not another")
    result = sample.run(*NO_RECORDING, *only)
    result.assert_outcomes(passed=1, deselected=SAMPLE_TESTS - 1)
    result.stdout.fnmatch_lines(
        [
            "*PromptcacheWarning: promptcache: the request body differs from the one the cassette recorded "
            "(served anyway)",
            "*cassette:  cassettes/test_openai/test_chat.yaml, interaction 1 of 1",
            '*-        "content": "Say hello",',
            '*+        "content": "Say goodbye",',
        ]
    )

    failing = sample.run(*NO_RECORDING, *only, "-o", "promptcache_vcr_drift=fail")
    failing.assert_outcomes(failed=1, deselected=SAMPLE_TESTS - 1)
    failing.stdout.fnmatch_lines(
        ["*the request body differs from the one the cassette recorded (so the test fails)"]
    )
    ignored = sample.run(*NO_RECORDING, *only, "-o", "promptcache_vcr_drift=ignore")
    ignored.assert_outcomes(passed=1, deselected=SAMPLE_TESTS - 1)
    assert "PromptcacheWarning" not in ignored.stdout.str()


def test_a_request_the_cassette_cannot_answer_fails_with_what_vcr_saw(sample: Suite) -> None:
    edit(sample.path / "test_openai.py", "for _ in range(3)]", "for _ in range(4)]")
    with (sample.path / "test_openai.py").open("a") as fh:
        fh.write(
            "\n\n@pytest.mark.vcr\ndef test_not_recorded(oai: openai.OpenAI) -> None:\n"
            '    oai.embeddings.create(model="text-embedding-3-small", input="never recorded")\n'
        )
    result = sample.run(*NO_RECORDING, "-k", "polling or not_recorded")
    result.assert_outcomes(failed=2, deselected=SAMPLE_TESTS - 1)
    polled = "cassettes/test_openai/test_polling_gets_three_answers.yaml"
    result.stdout.fnmatch_lines(
        [
            "*promptcache: no recording for this request (mode: replay)",
            f"*scope:     {polled}, the request's occurrence 4 there",
            f"*vcr cassette: {polled} (3 interactions, 3 played)",
            "*every interaction that matches it was played already*",
            "To record it, run with the API reachable and its key set:",
        ]
    )
    result.stdout.fnmatch_lines(
        ["*vcr cassette: cassettes/test_openai/test_not_recorded.yaml (0 interactions, 0 played)"]
    )


def test_pytest_recording_when_active_keeps_its_tests_and_says_so_once(sample: Suite) -> None:
    result = sample.run("-k", "test_chat or test_message")
    result.assert_outcomes(passed=7, deselected=SAMPLE_TESTS - 7)
    lines = [line for line in result.stdout.lines if "pytest-recording is active" in line]
    assert lines == [LEFT_TO_RECORDING]
    assert "LLM calls" not in result.stdout.str()  # vcr answered them, above the plugin


MINI_CONFTEST = """
import os
import openai
import pytest

BASE = os.environ["LLM_URL"]

@pytest.fixture
def vcr_config():
    return {"filter_headers": ["authorization"]}

@pytest.fixture
def oai():
    return openai.OpenAI(base_url=BASE + "/v1", max_retries=0)

def ask(client, text):
    return client.chat.completions.create(model="gpt-4.1-mini", messages=[{"role": "user", "content": text}])
"""

MINI_TEST = """
import pytest
from conftest import ask

@pytest.mark.vcr
def test_ask(oai, vcr):
    assert ask(oai, "Recorded by vcr").choices[0].message.content == "echo: Recorded by vcr"
    {more}
"""


def recorded_with_pytest_recording(suite: Suite, more: str = "") -> Path:
    suite.pytester.makeconftest(MINI_CONFTEST)
    suite.pytester.makepyfile(test_mini=MINI_TEST.format(more=more))
    suite.run("-p", "no:promptcache", "--record-mode=once").assert_outcomes(passed=1)
    cassette = suite.path / "cassettes" / "test_mini" / "test_ask.yaml"
    assert cassette.is_file()
    return cassette


@pytest.mark.slow  # records cassettes with pytest-recording, then three runs
def test_a_vcr_test_records_what_its_cassette_lacks_as_its_own_and_replays_it(suite: Suite) -> None:
    cassette = recorded_with_pytest_recording(suite)
    sent = suite.server.count()
    suite.run(*NO_RECORDING).assert_outcomes(passed=1)
    assert suite.server.count() == sent  # served from the cassette

    # The test grows a call its cassette never saw: --record-mode=once records it (promptcache's record).
    more = (
        'assert ask(oai, "Added later").choices[0].message.content == "echo: Added later"\n'
        "    assert [r.path for r in vcr.requests] == ['/v1/chat/completions'] * 2\n"
        "    assert b'Added later' in vcr.responses[1]['body']['string']"
    )
    suite.pytester.makepyfile(test_mini=MINI_TEST.format(more=more))
    before = cassette.read_bytes()
    recorded = suite.run(*NO_RECORDING, "--record-mode=once")
    recorded.assert_outcomes(passed=1)
    recorded.stdout.fnmatch_lines(["mode record: 2 LLM calls: 1 replayed, 1 live (1 recorded)"])
    assert cassette.read_bytes() == before  # a cassette is never written
    (saved,) = suite.recordings().values()
    assert saved["schema_version"] == 4
    assert saved["request"]["scope"] == {"name": "cassettes/test_mini/test_ask.yaml", "index": 0}

    suite.server.stop()
    suite.run(*NO_RECORDING).assert_outcomes(passed=1)


@pytest.mark.slow  # records a cassette with pytest-recording first
def test_async_vcr_tests_never_block_the_event_loop(suite: Suite) -> None:
    recorded_with_pytest_recording(suite)
    suite.pytester.makepyfile(
        test_async="""
        import asyncio, os, openai, pytest
        from blockbuster import blockbuster_ctx

        @pytest.fixture(autouse=True)
        def blockbuster():
            with blockbuster_ctx() as detector:
                yield detector

        @pytest.mark.vcr(os.path.join(os.path.dirname(__file__), "cassettes", "test_mini", "test_ask.yaml"))
        async def test_async_ask():
            client = openai.AsyncOpenAI(base_url=os.environ["LLM_URL"] + "/v1", max_retries=0)
            calls = [client.chat.completions.create(
                model="gpt-4.1-mini", messages=[{"role": "user", "content": "Recorded by vcr"}]
            )]
            (reply,) = await asyncio.gather(*calls)
            assert reply.choices[0].message.content == "echo: Recorded by vcr"
        """
    )
    suite.server.stop()
    result = suite.run(*NO_RECORDING, "-o", "asyncio_mode=auto")
    result.assert_outcomes(passed=2)
    assert "BlockingError" not in result.stdout.str()


def test_without_vcrpy_a_marked_test_fails_with_how_to_install_it(suite: Suite) -> None:
    suite.pytester.makeconftest(
        """
        import sys
        for name in list(sys.modules):
            if name == "vcr" or name.startswith(("vcr.", "pytest_promptcache.compat_vcr.")):
                del sys.modules[name]
        sys.modules["vcr"] = None  # as if it were not installed
        """
    )
    suite.pytester.makepyfile(
        """
        import pytest

        @pytest.mark.vcr
        def test_marked():
            pass

        def test_unmarked(vcr):
            assert vcr is None
        """
    )
    result = suite.run(*NO_RECORDING)
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(
        ["*promptcache: @pytest.mark.vcr tests are read with vcrpy, not installed here: pip install*[vcr]*"]
    )


def test_disable_recording_and_the_fixtures_a_suite_overrides(suite: Suite) -> None:
    suite.pytester.makepyfile(
        """
        import pytest

        @pytest.mark.vcr
        def test_marked(vcr, record_mode, vcr_cassette_dir, default_cassette_name):
            assert (vcr is None) == (record_mode == "none" and "disabled" in vcr_cassette_dir)
            assert default_cassette_name == "test_marked"

        class TestGroup:
            @pytest.mark.vcr
            @pytest.mark.parametrize("x", ["a/b"])
            def test_named(self, x, default_cassette_name, vcr):
                assert default_cassette_name == "TestGroup.test_named[a-b]"
                assert len(vcr) == 0

            @pytest.mark.default_cassette("shared")
            def test_named_by_marker(self, default_cassette_name):
                assert default_cassette_name == "shared"
        """
    )
    suite.run(*NO_RECORDING).assert_outcomes(passed=3)
    suite.pytester.makeconftest(
        "import pytest\n@pytest.fixture(scope='module')\ndef vcr_cassette_dir():\n    return 'disabled'\n"
    )
    suite.run(*NO_RECORDING, "--disable-recording", "-k", "test_marked").assert_outcomes(
        passed=1, deselected=2
    )


@pytest.mark.slow  # a record run and a replay run
def test_a_test_scope_gives_each_test_its_answers_in_order(clients: Suite) -> None:
    clients.pytester.makeini("[pytest]\npromptcache_scope = test\n")
    clients.pytester.makepyfile(
        test_polling="""
        import pytest
        from pathlib import Path
        from conftest import ask

        def test_polls(oai):
            ids = [ask(oai, "done yet?").id for _ in range(3)]
            with Path("ids.txt").open("a") as fh:
                fh.write(",".join(ids) + "\\n")

        def test_asks_once(oai):
            assert ask(oai, "done yet?").choices[0].message.content == "echo: done yet?"

        @pytest.mark.promptcache(scope="session")
        def test_shared(oai):
            assert ask(oai, "shared").id == ask(oai, "shared").id
        """
    )
    clients.run("--promptcache=record").assert_outcomes(passed=3)
    requests = [r["request"] for r in clients.recordings().values()]
    scopes = sorted((r["scope"]["name"], r["scope"]["index"]) for r in requests if "scope" in r)
    polls = [("test_polling.py::test_polls", i) for i in range(3)]
    assert scopes == [("test_polling.py::test_asks_once", 0), *polls]
    assert sum(1 for r in requests if "scope" not in r) == 1  # the session-scoped test's one

    clients.server.stop()
    clients.run().assert_outcomes(passed=3)
    recorded, replayed = (clients.path / "ids.txt").read_text().splitlines()
    assert len(set(recorded.split(","))) == 3
    assert replayed == recorded  # three answers, in the order they came


@pytest.mark.slow  # records a cassette with pytest-recording first
def test_a_record_mode_in_a_marker_keeps_a_test_offline_while_others_record(suite: Suite) -> None:
    recorded_with_pytest_recording(suite)
    suite.pytester.makepyfile(
        test_more="""
        import pytest
        from conftest import ask

        @pytest.mark.vcr(record_mode="none")
        def test_never_recorded(oai):
            ask(oai, "Not in any cassette")

        @pytest.mark.vcr(record_mode="all")
        def test_recorded_again(oai):
            ask(oai, "Recorded again")
        """
    )
    sent = suite.server.count()
    result = suite.run(*NO_RECORDING, "--promptcache=record", "test_more.py")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        ["*_ test_never_recorded _*", "promptcache: no recording for this request (mode: replay)"]
    )
    assert suite.server.count() == sent + 1  # only the test whose marker lets it record went live


def test_a_cassette_vcr_cannot_read_fails_its_test_with_what_to_do(suite: Suite) -> None:
    (suite.path / "cassettes" / "test_broken").mkdir(parents=True)
    broken = "interactions: [{request: 1}]\n" + "# a comment\n" * 200  # over 1 KiB
    (suite.path / "cassettes" / "test_broken" / "test_x.yaml").write_text(broken)
    suite.pytester.makepyfile(
        test_broken="""
        import pytest

        @pytest.mark.vcr
        def test_x():
            pass

        @pytest.mark.default_cassette
        def test_unnamed(default_cassette_name):
            pass
        """
    )
    result = suite.run(*NO_RECORDING)
    result.assert_outcomes(errors=2)
    result.stdout.fnmatch_lines(
        [
            "*promptcache: vcr cannot read the cassette *test_x.yaml: *register it in "
            "pytest_recording_configure(config, vcr)",
            "*@pytest.mark.default_cassette needs the cassette's name*",
        ]
    )
    # Reading a cassette is bounded like reading a recording.
    capped = suite.run(*NO_RECORDING, "-o", "promptcache_max_recording_size=1KiB", "-k", "test_x")
    capped.assert_outcomes(errors=1, deselected=1)
    capped.stdout.fnmatch_lines(["*the cassette *test_x.yaml cannot be read: *over the 1.0 KiB limit*"])


def test_who_owns_the_vcr_fixtures(suite: Suite) -> None:
    suite.pytester.makepyfile(
        test_owner="""
        import pytest

        @pytest.mark.vcr
        def test_marked(request):
            request.getfixturevalue("vcr_config")
        """
    )
    # The layer switched off: no fixtures of its own (the marker stays known).
    off = suite.run(
        *NO_RECORDING, "-o", "promptcache_vcr=off", "-W", "error::pytest.PytestUnknownMarkWarning"
    )
    off.assert_outcomes(failed=1)
    off.stdout.fnmatch_lines(["*fixture 'vcr_config' not found*"])
    # pytest-recording named on the command line registers before this plugin: it owns them.
    explicit = suite.run("-p", "recording")
    explicit.assert_outcomes(passed=1)
    explicit.stdout.fnmatch_lines([LEFT_TO_RECORDING])
    # So does any plugin named "vcr" (pytest-vcr's name); vcrpy's own module stands in for it here.
    other = suite.run(*NO_RECORDING, "-p", "vcr")
    other.assert_outcomes(failed=1)
    other.stdout.fnmatch_lines(["*fixture 'vcr_config' not found*"])


def test_a_vcr_fixture_of_the_suite_s_own_runs_only_where_asked_for(suite: Suite) -> None:
    # Suites that use vcrpy without pytest-recording often have a fixture of that name.
    suite.pytester.makeconftest(
        """
        import pytest

        @pytest.fixture
        def vcr():
            raise RuntimeError("only for the tests that ask for it")
        """
    )
    suite.pytester.makepyfile(
        """
        def test_unmarked():
            pass
        """
    )
    suite.run(*NO_RECORDING).assert_outcomes(passed=1)


def test_an_active_pytest_recording_s_record_mode_is_its_own(clients: Suite) -> None:
    clients.pytester.makepyfile(
        """
        from conftest import ask

        def test_unmarked(oai0):
            ask(oai0, "never recorded")
        """
    )
    result = clients.run("--record-mode=once")  # pytest-recording's option, for its tests only
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*promptcache: no recording for this request (mode: replay)"])
    assert clients.server.count() == 0
