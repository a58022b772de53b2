"""The pytest layer: options, ini, marker, hooks. The only module that imports pytest; it adapts and
delegates, the engine decides."""

from __future__ import annotations

import os
from collections.abc import Generator
from pathlib import Path
from typing import Any

import pytest
from pydantic import TypeAdapter

from .engine import Engine
from .intercept import install, uninstall
from .report import CallRecord, Report, TestCalls, append_github_summary, markdown, terminal_lines
from .settings import MODES_HELP, SettingsError, TestOptions, build_settings
from .store import write_atomic

ENGINE_KEY = pytest.StashKey[Engine]()
OPTIONS_KEY = pytest.StashKey[TestOptions]()
REPORT_KEY = pytest.StashKey[Report]()
WORKER_CALLS_KEY = pytest.StashKey[list[CallRecord]]()
WORKEROUTPUT_KEY = "promptcache_calls"

INI_STRINGS = {
    "promptcache_mode": "default mode: replay, record, rewrite or off",
    "promptcache_dir": "directory of recordings, relative to the rootdir",
    "promptcache_budget": "refuse live calls once they have cost this many USD",
    "promptcache_memory_size": "recordings kept parsed in memory (default 4096)",
    "promptcache_record_rpm": "record/rewrite: at most this many requests per minute per host (all workers)",
    "promptcache_record_tpm": "record/rewrite: at most this many tokens per minute per host, across workers",
    "promptcache_record_retries": "record/rewrite: retry 429 and 5xx this many times (backoff, Retry-After)",
    "promptcache_state_dir": "where processes coordinate (locks, pacing, budget); default: a temp directory",
}
INI_LINELISTS = {
    "promptcache_endpoints": "LLM endpoints to intercept: path suffixes ('/v1/rerank', ':generateContent') "
    "or "
    "'host[:port]/suffix'; replaces the defaults unless a line says 'defaults'",
    "promptcache_ignore_fields": "JSON body fields left out of the key and the recording (dotted paths: "
    "'user', 'metadata.user_id')",
    "promptcache_key_headers": "request headers that take part in the key, besides anthropic-version, "
    "anthropic-beta and openai-beta",
    "promptcache_secret_headers": "more header names never written to disk",
    "promptcache_secret_params": "more query parameter names never written to disk",
    "promptcache_secret_patterns": "more regexes whose matches are replaced by <redacted> in recordings",
    "promptcache_prices": "prices per million tokens for models genai-prices lacks or that you pay "
    "differently: 'MODEL input=0.4 output=1.6 [cache_read=0.1] [cache_write=0.5]'",
}


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("promptcache", "record and replay LLM API calls (pytest-promptcache)")
    group.addoption(
        "--promptcache",
        dest="promptcache_mode",
        metavar="MODE",
        default=None,
        help=f"replay (default): serve recordings, fail on a missing one; record: go live for missing "
        f"recordings and save them; rewrite: go live for every call and overwrite; off: no cassettes. "
        f"One of {MODES_HELP}. Env PROMPTCACHE_MODE, ini promptcache_mode.",
    )
    group.addoption(
        "--promptcache-dir",
        dest="promptcache_dir",
        metavar="DIR",
        default=None,
        help="directory of recordings, relative to the rootdir (default: cassettes). Ini promptcache_dir.",
    )
    group.addoption(
        "--promptcache-report",
        dest="promptcache_report",
        metavar="PATH",
        default=None,
        help="write the session's calls, tokens and dollars as JSON to PATH",
    )
    group.addoption(
        "--promptcache-report-md",
        dest="promptcache_report_md",
        metavar="PATH",
        default=None,
        help="write the session report as Markdown to PATH (also appended to $GITHUB_STEP_SUMMARY when set)",
    )
    group.addoption(
        "--promptcache-budget",
        dest="promptcache_budget",
        metavar="USD",
        default=None,
        help="refuse live calls once live calls in this session have cost USD; the session then fails. "
        "Ini promptcache_budget.",
    )
    for name, help_text in INI_STRINGS.items():
        parser.addini(name, help_text, default="")
    for name, help_text in INI_LINELISTS.items():
        parser.addini(name, help_text, type="linelist", default=[])


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "promptcache(mode=...): per-test pytest-promptcache options; mode is one of " + MODES_HELP,
    )
    ini = {name: config.getini(name) for name in (*INI_STRINGS, *INI_LINELISTS)}
    try:
        settings = build_settings(
            rootdir=Path(config.rootpath),
            cli_mode=config.getoption("promptcache_mode"),
            cli_dir=config.getoption("promptcache_dir"),
            cli_budget=config.getoption("promptcache_budget"),
            env=os.environ,
            ini=ini,
        )
    except SettingsError as exc:
        raise pytest.UsageError(f"pytest-promptcache: {exc}") from None
    engine = Engine(settings)
    config.stash[ENGINE_KEY] = engine
    config.stash[WORKER_CALLS_KEY] = []
    install(engine)
    config.add_cleanup(lambda: uninstall(engine))
    if config.pluginmanager.hasplugin("xdist"):
        # pytest_testnodedown is xdist's hook: declaring it without xdist is an unknown-hook error.
        config.pluginmanager.register(XdistMerge(config), "promptcache-xdist")


def _options(item: pytest.Item) -> TestOptions:
    if OPTIONS_KEY not in item.stash:
        marker = item.get_closest_marker("promptcache")
        if marker is None:
            item.stash[OPTIONS_KEY] = TestOptions()
        else:
            try:
                item.stash[OPTIONS_KEY] = TestOptions.from_marker(marker.args, marker.kwargs, item.nodeid)
            except SettingsError as exc:
                raise pytest.UsageError(f"pytest-promptcache: {exc}") from None
    return item.stash[OPTIONS_KEY]


def _command_target(item: pytest.Item) -> str:
    """The node id as it must be typed from the directory pytest was started in (node ids are
    relative to the rootdir, which differs when a suite has its own ini file)."""
    invocation_dir = item.config.invocation_params.dir
    _, sep, rest = item.nodeid.partition("::")
    try:
        relative = item.path.relative_to(invocation_dir).as_posix()
    except ValueError:
        relative = os.path.relpath(item.path, invocation_dir)
    return relative + sep + rest


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Bad marker arguments are usage errors before anything runs, not failures halfway through.
    for item in items:
        _options(item)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item) -> Generator[None, object, object]:
    engine = item.config.stash[ENGINE_KEY]
    engine.begin_test(item.nodeid, _options(item).mode, _command_target(item))
    try:
        return (yield)
    finally:
        engine.end_test()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    problems = item.config.stash[ENGINE_KEY].take_problems()
    if problems:
        # Fail even when the code under test caught the SDK error that carried the miss.
        text = "\n\n".join(problems)
        if call.excinfo is not None:
            own = call.excinfo.exconly().splitlines()[0]
            if len(own) > 300:
                own = own[:300] + "..."
            text += f"\n\nThe test then raised: {own}"
        report.outcome = "failed"
        report.longrepr = text
        if hasattr(report, "wasxfail"):
            del report.wasxfail
    return report


@pytest.fixture
def promptcache(request: pytest.FixtureRequest) -> TestCalls:
    """This test's LLM calls so far (replayed or live), with model, usage and cost.

    ``promptcache.calls``, ``.total_tokens``, ``.input_tokens``, ``.output_tokens``, ``.cost_usd``.
    """
    engine = request.config.stash[ENGINE_KEY]
    ctx = engine.context
    return TestCalls(lambda: [engine.ledger.record_of(event) for event in list(ctx.calls)])


class XdistMerge:
    """On the xdist controller: collect each worker's calls as it finishes."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config

    def pytest_testnodedown(self, node: Any, error: object) -> None:
        payload = getattr(node, "workeroutput", {}).get(WORKEROUTPUT_KEY)
        if payload:
            calls = TypeAdapter(list[CallRecord]).validate_json(payload)
            self.config.stash[WORKER_CALLS_KEY].extend(calls)


def pytest_sessionfinish(session: pytest.Session) -> None:
    config = session.config
    engine = config.stash.get(ENGINE_KEY, None)
    if engine is None:
        return
    calls = [engine.ledger.record_of(event) for event in engine.events]
    workeroutput = getattr(config, "workeroutput", None)
    if workeroutput is not None:
        # An xdist worker hands its calls to the controller, which reports for the whole run.
        workeroutput[WORKEROUTPUT_KEY] = TypeAdapter(list[CallRecord]).dump_json(calls).decode()
        return
    merged: list[CallRecord] = config.stash[WORKER_CALLS_KEY]
    calls.extend(merged)
    report = Report.build(engine.settings.mode.value, calls, budget_usd=engine.settings.budget_usd)
    config.stash[REPORT_KEY] = report
    base = config.invocation_params.dir
    json_path = config.getoption("promptcache_report")
    if json_path:
        write_atomic(base / json_path, report.model_dump_json(indent=2) + "\n")
    md_path = config.getoption("promptcache_report_md")
    if report.totals.calls and (md_path or os.environ.get("GITHUB_STEP_SUMMARY")):
        text = markdown(report)
        if md_path:
            write_atomic(base / md_path, text)
        append_github_summary(text)
    if report.budget_exceeded and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    report = terminalreporter.config.stash.get(REPORT_KEY, None)
    if report is None or not report.totals.calls:
        return
    terminalreporter.write_sep("-", "promptcache")
    verbose = terminalreporter.config.get_verbosity() > 0
    for text, colour in terminal_lines(report, verbose):
        markup = {colour: True} if colour else {}
        terminalreporter.write_line(text, **markup)
