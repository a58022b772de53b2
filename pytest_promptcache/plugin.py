"""The pytest layer: options, ini, marker, hooks. The only module that imports pytest; it adapts and
delegates, the engine decides.

Start-up stays light: nothing here imports pydantic or httpx until an LLM call is made or a report is
asked for, so installing the plugin costs a suite that makes no LLM call almost nothing."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Generator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from .context import Session
from .intercept import install, uninstall
from .rules import KeyRules
from .settings import MODES_HELP, Mode, SettingsError, TestOptions, build_settings

if TYPE_CHECKING:
    from .report import CallRecord, Report, TestCalls

SESSION_KEY = pytest.StashKey[Session]()
OPTIONS_KEY = pytest.StashKey[TestOptions]()
REPORT_KEY = pytest.StashKey["Report"]()
COVERAGE_KEY = pytest.StashKey["Coverage"]()
PRUNE_KEY = pytest.StashKey["PruneResult"]()
WORKER_CALLS_KEY = pytest.StashKey["list[CallRecord]"]()
WORKEROUTPUT_KEY = "promptcache_calls"
DESELECTED_KEY = "promptcache_deselected"

INI_STRINGS = {
    "promptcache_mode": "default mode: replay, record, rewrite or off",
    "promptcache_dir": "directory of recordings, relative to the rootdir",
    "promptcache_budget": "refuse live calls once they have cost this many USD",
    "promptcache_memory_size": "recordings kept parsed in memory (default 4096)",
    "promptcache_record_rpm": "record/rewrite: at most this many requests per minute per host (all workers)",
    "promptcache_record_tpm": "record/rewrite: at most this many tokens per minute per host, across workers",
    "promptcache_record_retries": "record/rewrite: retry 429 and 5xx this many times (backoff, Retry-After)",
    "promptcache_state_dir": "where processes coordinate (locks, pacing, budget); default: a temp directory",
    "promptcache_max_age": "recordings older than this (12h, 30d, 2w) are stale",
    "promptcache_on_expiry": "a stale recording: warn (serve it), fail, or rerecord (in record mode)",
    "promptcache_match": "exact (default), or similar:THRESHOLD: replay may serve the most similar recording",
}
INI_LINELISTS = {
    "promptcache_endpoints": "LLM endpoints to intercept: path suffixes ('/v1/rerank', ':generateContent') "
    "or "
    "'host[:port]/suffix'; replaces the defaults unless a line says 'defaults'",
    "promptcache_ignore_fields": "JSON body fields left out of the key and the recording (JSON paths: "
    "'user', 'metadata.user_id', 'messages[*].id')",
    "promptcache_normalize": "text normalised before hashing: a built-in (uuid, iso-date, iso-datetime, "
    "unix-time, hex-id) or 'REGEX => REPLACEMENT'",
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
    group.addoption(
        "--promptcache-max-age",
        dest="promptcache_max_age",
        metavar="AGE",
        default=None,
        help="recordings older than AGE (12h, 30d, 2w) are stale; see ini promptcache_on_expiry",
    )
    group.addoption(
        "--promptcache-match",
        dest="promptcache_match",
        metavar="RULE",
        default=None,
        help="exact (default), or similar:THRESHOLD: in replay, serve the most similar recording of the "
        "same endpoint and model when there is no exact one (every substitution is reported)",
    )
    group.addoption(
        "--promptcache-prune",
        dest="promptcache_prune",
        action="store_true",
        default=False,
        help="after a run of the whole suite, delete the recordings no test used",
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
            cli_max_age=config.getoption("promptcache_max_age"),
            cli_match=config.getoption("promptcache_match"),
            env=os.environ,
            ini=ini,
        )
    except SettingsError as exc:
        raise pytest.UsageError(f"pytest-promptcache: {exc}") from None
    session = Session(settings)
    config.stash[SESSION_KEY] = session
    config.stash[WORKER_CALLS_KEY] = []
    config.stash[COVERAGE_KEY] = Coverage()
    config.pluginmanager.register(CoverageTracker(config.stash[COVERAGE_KEY]), "promptcache-coverage")
    install(session)
    config.add_cleanup(lambda: uninstall(session))
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


class HookSpecs:
    @pytest.hookspec
    def pytest_promptcache_canonical_request(self, request: dict[str, Any], item: pytest.Item) -> None:
        """Change the canonical request of an LLM call before it is hashed, in place.

        ``request`` has ``method``, ``host``, ``path``, ``query`` (list of [name, value]), ``headers``
        (the key headers), ``body`` (the JSON body, ignored fields removed, normalised) or ``body_text``.
        What it holds afterwards is hashed to the key and stored in the recording, so a miss diff shows it.
        ``item`` is the running test. Called for every intercepted request of the test.
        """


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    pluginmanager.add_hookspecs(HookSpecs)


def _rules(item: pytest.Item, session: Session, options: TestOptions) -> KeyRules:
    rules = session.default_rules
    if options.ignore_fields or options.normalize:
        rules = rules.merged(options.ignore_fields, options.normalize)
    hook = item.ihook.pytest_promptcache_canonical_request
    if hook.get_hookimpls():
        rules = dataclasses.replace(
            rules, hook=lambda request: hook(request=request, item=item), hook_scope=item.nodeid
        )
    return rules


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
    session = item.config.stash[SESSION_KEY]
    options = _options(item)
    session.begin_test(item.nodeid, options.mode, _command_target(item), _rules(item, session, options))
    try:
        return (yield)
    finally:
        session.end_test()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    problems = item.config.stash[SESSION_KEY].take_problems()
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
    from .report import TestCalls

    session = request.config.stash[SESSION_KEY]
    ctx = session.context

    def records() -> list[CallRecord]:
        engine = session.started_engine
        if engine is None:
            return []
        return [engine.ledger.record_of(event) for event in list(ctx.calls)]

    return TestCalls(records)


@dataclasses.dataclass
class Coverage:
    """What tells whether this run executed the whole suite, so unused recordings may be pruned."""

    deselected: int = 0
    failed: int = 0
    skipped: int = 0
    collection_errors: int = 0


@dataclasses.dataclass
class PruneResult:
    deleted: list[str]
    refused: str | None = None


class CoverageTracker:
    """Counts what makes a run partial. A plugin object per session, since reports carry no config."""

    def __init__(self, coverage: Coverage) -> None:
        self.coverage = coverage

    def pytest_deselected(self, items: list[pytest.Item]) -> None:
        self.coverage.deselected += len(items)

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        if report.failed:
            self.coverage.collection_errors += 1

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.failed:
            self.coverage.failed += 1
        elif report.skipped:
            self.coverage.skipped += 1


def _narrowing_args(config: pytest.Config) -> str | None:
    """An argument that selects less than the whole suite: a node id, a file, or a directory below
    the rootdir and the testpaths."""
    if config.args_source is not pytest.Config.ArgsSource.ARGS:
        return None
    roots = {config.rootpath} | {(config.rootpath / p).resolve() for p in config.getini("testpaths")}
    for arg in config.args:
        if "::" in arg:
            return arg
        path = (config.invocation_params.dir / arg).resolve()
        if not path.is_dir() or not any(path == root or root.is_relative_to(path) for root in roots):
            return arg
    return None


def _incomplete_because(session: pytest.Session, mode: Mode, coverage: Coverage) -> str | None:
    config = session.config
    reasons = []
    if mode is Mode.OFF:
        reasons.append("mode off uses no recordings")
    if config.option.keyword:
        reasons.append(f"-k {config.option.keyword!r} selected a subset")
    if config.option.markexpr:
        reasons.append(f"-m {config.option.markexpr!r} selected a subset")
    narrowing = _narrowing_args(config)
    if narrowing is not None:
        reasons.append(f"it ran only {narrowing!r}, not the whole suite")
    if coverage.deselected:
        reasons.append(f"{coverage.deselected} tests were deselected")
    if coverage.collection_errors:
        reasons.append(f"{coverage.collection_errors} files failed to collect")
    if coverage.failed:
        reasons.append(f"{coverage.failed} tests failed or errored")
    if coverage.skipped:
        reasons.append(f"{coverage.skipped} tests were skipped")
    if session.shouldstop or session.shouldfail:
        reasons.append("the run stopped early")
    return "; ".join(reasons) or None


def _prune(cassette_dir: Path, report: Report) -> PruneResult:
    from .store import SUFFIX

    if not report.unused_recordings_complete:
        return PruneResult(deleted=[], refused=report.unused_recordings_why_incomplete)
    deleted = []
    for key in report.unused_recordings:
        try:
            (cassette_dir / f"{key}{SUFFIX}").unlink()
        except FileNotFoundError:
            continue
        deleted.append(key)
    return PruneResult(deleted=deleted)


class XdistMerge:
    """On the xdist controller: collect each worker's calls as it finishes."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config

    def pytest_testnodedown(self, node: Any, error: object) -> None:
        payload = getattr(node, "workeroutput", {}).get(WORKEROUTPUT_KEY)
        if payload:
            from pydantic import TypeAdapter

            from .report import CallRecord

            calls = TypeAdapter(list[CallRecord]).validate_json(payload)
            self.config.stash[WORKER_CALLS_KEY].extend(calls)
        deselected = getattr(node, "workeroutput", {}).get(DESELECTED_KEY, 0)
        # Every worker collects and deselects the same items: one worker's count is the run's.
        coverage = self.config.stash[COVERAGE_KEY]
        coverage.deselected = max(coverage.deselected, int(deselected))


def pytest_sessionfinish(session: pytest.Session) -> None:
    config = session.config
    psession = config.stash.get(SESSION_KEY, None)
    if psession is None:
        return
    engine = psession.started_engine
    merged: list[CallRecord] = config.stash[WORKER_CALLS_KEY]
    workeroutput = getattr(config, "workeroutput", None)
    wanted = engine is not None or merged or workeroutput is not None
    wanted = wanted or any(
        config.getoption(name)
        for name in ("promptcache_prune", "promptcache_report", "promptcache_report_md")
    )
    if not wanted:
        return  # no LLM call and no report asked for: nothing to import, nothing to say
    from pydantic import TypeAdapter

    from .report import CallRecord, Report, append_github_summary, markdown
    from .store import CassetteStore, write_atomic

    calls = [engine.ledger.record_of(event) for event in engine.events] if engine is not None else []
    if workeroutput is not None:
        # An xdist worker hands its calls to the controller, which reports for the whole run.
        workeroutput[WORKEROUTPUT_KEY] = TypeAdapter(list[CallRecord]).dump_json(calls).decode()
        workeroutput[DESELECTED_KEY] = config.stash[COVERAGE_KEY].deselected
        return
    calls.extend(merged)
    settings = psession.settings
    report = Report.build(
        settings.mode.value,
        calls,
        budget_usd=settings.budget_usd,
        cassette_dir=str(settings.cassette_dir),
        recorded_keys=CassetteStore(settings.cassette_dir).keys(),
        incomplete_because=_incomplete_because(session, settings.mode, config.stash[COVERAGE_KEY]),
    )
    config.stash[REPORT_KEY] = report
    if config.getoption("promptcache_prune"):
        result = config.stash[PRUNE_KEY] = _prune(settings.cassette_dir, report)
        if result.refused is not None and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.USAGE_ERROR
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
    prune = terminalreporter.config.stash.get(PRUNE_KEY, None)
    if report is None or (not report.totals.calls and prune is None):
        return
    from .report import terminal_lines

    terminalreporter.write_sep("-", "promptcache")
    if prune is not None:
        if prune.refused is not None:
            terminalreporter.write_line(
                f"--promptcache-prune refused, nothing was deleted: {prune.refused}. Unused recordings can "
                "only be known from a run of the whole suite in which every test passed.",
                red=True,
            )
        else:
            terminalreporter.write_line(f"pruned {len(prune.deleted)} unused recordings", green=True)
            for key in prune.deleted:
                terminalreporter.write_line(f"  deleted {key}.json")
    verbose = terminalreporter.config.get_verbosity() > 0
    for text, colour in terminal_lines(report, verbose):
        markup = {colour: True} if colour else {}
        terminalreporter.write_line(text, **markup)
