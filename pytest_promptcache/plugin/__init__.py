"""The pytest layer: options, ini, marker, hooks, the fixture and the summary. The only package that
imports pytest; it adapts and delegates, the engine decides.

Start-up stays light: nothing here imports pydantic or httpx until an LLM call is made or a report is
asked for, so installing the plugin costs a suite that makes no LLM call almost nothing."""

from __future__ import annotations

import dataclasses
import gc
import os
from collections.abc import Callable, Generator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from .. import placeholders
from ..clients import install, preload, uninstall
from ..coordination.statedir import UnsafeStateDir, check_state_dirs, state_dirs
from ..marker import TestOptions
from ..rules import KeyRules
from ..session import CacheSession
from ..settings import Mode, SettingsError, build_settings
from ..tokens import preload as preload_tokenizer
from .costs import (
    REPORT_OPTIONS,
    add_cost_sections,
    add_junit_properties,
    load_baseline,
    runs_tests,
    write_html,
)
from .options import HookSpecs, add_options, marker_lines, read_ini
from .proxy import configured_upstreams, promptcache_proxy
from .scope import RunScope, ScopeTracker, incomplete_because, prune
from .stash import (
    DESELECTED_KEY,
    NOTICES_KEY,
    OPTIONS_KEY,
    PRUNE_KEY,
    RECORDING_KEY,
    REPORT_KEY,
    SCOPE_KEY,
    SESSION_KEY,
    UNWRITTEN_KEY,
    UPSTREAMS_KEY,
    WORKER_CALLS_KEY,
    WORKER_NOTICES_KEY,
    WORKEROUTPUT_KEY,
)
from .vcr_compat import LEFT_TO_RECORDING, left_to_recording
from .vcr_compat import add_options as add_vcr_options
from .vcr_compat import cli_mode as record_mode_option
from .vcr_compat import configure as configure_vcr
from .xdist import XdistMerge

if TYPE_CHECKING:
    from ..ledger import Call, CallRecord
    from ..report.model import Report
    from ..testcalls import TestCalls

__all__ = ["promptcache_proxy"]  # a fixture of the plugin, defined beside it


class PromptcacheWarning(pytest.PytestWarning):
    """Something a test should know about its LLM calls that does not fail it (a request body that
    drifted from the one its vcr cassette recorded)."""


def pytest_addoption(parser: pytest.Parser, pluginmanager: pytest.PytestPluginManager) -> None:
    add_options(parser)
    add_vcr_options(parser, pluginmanager)


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    pluginmanager.add_hookspecs(HookSpecs)


def pytest_configure(config: pytest.Config) -> None:
    for line in marker_lines():
        config.addinivalue_line("markers", line)
    ini = read_ini(config)
    try:
        settings = build_settings(
            rootdir=Path(config.rootpath),
            cli_mode=config.getoption("promptcache_mode") or record_mode_option(config),
            cli_dir=config.getoption("promptcache_dir"),
            cli_budget=config.getoption("promptcache_budget"),
            cli_max_age=config.getoption("promptcache_max_age"),
            cli_match=config.getoption("promptcache_match"),
            env=os.environ,
            ini=ini,
        )
    except SettingsError as exc:
        raise pytest.UsageError(f"pytest-promptcache: {exc}") from None
    try:
        # Before any test runs: a planted directory would otherwise show up as failures halfway through.
        check_state_dirs(*state_dirs(settings.cassette_dir, settings.state_dir))
    except UnsafeStateDir as exc:
        raise pytest.UsageError(f"pytest-promptcache: {exc}") from None
    except OSError as exc:
        raise pytest.UsageError(f"pytest-promptcache: cannot check the state directory: {exc}") from None
    if settings.mode is Mode.REPLAY and settings.placeholder_keys:
        saved = placeholders.apply(os.environ)
        config.add_cleanup(lambda: placeholders.restore(os.environ, saved))
    config.stash[RECORDING_KEY] = configure_vcr(config, settings.vcr)
    config.stash[UPSTREAMS_KEY] = configured_upstreams(ini["promptcache_upstreams"])
    session = CacheSession(settings)
    if session.guard is not None and settings.mode is Mode.REPLAY:
        session.guard.start_loading()
    config.stash[SESSION_KEY] = session
    if not hasattr(config, "workerinput"):  # the controller reports; xdist workers only hand calls over
        load_baseline(config)
    if settings.mode is not Mode.REPLAY and runs_tests(config):
        # A recording that needs an estimate must not wait for the tokenizer: it loads meanwhile.
        preload_tokenizer()
    config.stash[WORKER_CALLS_KEY] = []
    config.stash[WORKER_NOTICES_KEY] = []
    config.stash[SCOPE_KEY] = RunScope()
    config.pluginmanager.register(ScopeTracker(config.stash[SCOPE_KEY]), "promptcache-scope")
    install(session)
    config.add_cleanup(session.close)
    config.add_cleanup(lambda: uninstall(session))
    if config.pluginmanager.hasplugin("xdist"):
        # pytest_testnodedown is xdist's hook: declaring it without xdist is an unknown-hook error.
        config.pluginmanager.register(XdistMerge(config), "promptcache-xdist")


def pytest_report_collectionfinish(config: pytest.Config, items: list[pytest.Item]) -> str | None:
    # Once, and only for a suite that has tests pytest-recording takes over.
    if config.stash.get(RECORDING_KEY, False) and any(left_to_recording(item) for item in items):
        return LEFT_TO_RECORDING
    return None


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


def _rules(item: pytest.Item, session: CacheSession, options: TestOptions) -> KeyRules:
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
    # The test modules are imported now, and with them the client libraries they use.
    preload()


def pytest_collection_finish(session: pytest.Session) -> None:
    if runs_tests(session.config) and not session.config.option.collectonly:
        session.config.stash[SESSION_KEY].preload(item.nodeid for item in session.items)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item) -> Generator[None, object, object]:
    session = item.config.stash[SESSION_KEY]
    options = _options(item)
    test_scope = None if options.scope is None else options.scope == "test"
    rules = _rules(item, session, options)
    mode = options.mode
    if mode is None and item.config.stash[RECORDING_KEY] and left_to_recording(item):
        mode = Mode.OFF  # what pytest-recording records must reach the network
    session.begin_test(item.nodeid, mode, _command_target(item), rules, test_scope)
    try:
        return (yield)
    finally:
        session.end_test()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    context = item.config.stash[SESSION_KEY].context
    if call.when == "teardown":
        # The last report of the test carries its properties into JUnit XML, fixtures' calls included.
        add_junit_properties(item, list(context.calls))
    report = yield
    for warning in context.take_warnings():
        item.warn(PromptcacheWarning(warning))
    problems = context.take_problems()
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
    from ..testcalls import TestCalls

    ctx = request.config.stash[SESSION_KEY].context
    return TestCalls(lambda: list(ctx.calls))


def pytest_sessionfinish(session: pytest.Session) -> None:
    config = session.config
    psession = config.stash.get(SESSION_KEY, None)
    if psession is None:
        return
    engine = psession.started_engine
    merged: list[CallRecord] = config.stash[WORKER_CALLS_KEY]
    workeroutput = getattr(config, "workeroutput", None)
    wanted = bool(engine is not None or merged or workeroutput is not None or psession.refusals)
    wanted = wanted or any(
        config.getoption(name) for name in ("promptcache_prune", "promptcache_compare", *REPORT_OPTIONS)
    )
    if not wanted:
        return  # no LLM call and no report asked for: nothing to import, nothing to say
    from pydantic import TypeAdapter

    from ..ledger import CallEvent, CallRecord
    from ..report.model import Report
    from ..store.files import recording_keys

    if engine is not None and engine.settings.mode is not Mode.REPLAY:
        # A live response the client dropped unclosed ends its call when it is collected (a weakref
        # finalizer); one held in a reference cycle waits for the cyclic collector, which may not have
        # run yet. Replay sessions have no live bodies: they skip the collection's cost.
        gc.collect()
    calls: list[Call] = list(engine.ledger.events) if engine is not None else []
    calls += psession.refusals
    notices = list(engine.link.notices) if engine is not None and engine.link is not None else []
    if workeroutput is not None:
        # An xdist worker hands its calls to the controller, which reports for the whole run.
        records = [event.record() for event in calls if isinstance(event, CallEvent)]
        workeroutput[WORKEROUTPUT_KEY] = TypeAdapter(list[CallRecord]).dump_json(records).decode()
        workeroutput[DESELECTED_KEY] = config.stash[SCOPE_KEY].deselected
        workeroutput[NOTICES_KEY] = notices
        return
    calls.extend(merged)
    settings = psession.settings
    shared = None
    if settings.shared is not None:
        from ..report.fleet import SharedReport

        from_workers: list[str] = config.stash[WORKER_NOTICES_KEY]
        notices.extend(from_workers)
        # The run's spend across its machines: one bounded read, only when machines share a run.
        run_spent = engine.state.spent() if engine is not None and settings.shared.run_id else None
        shared = SharedReport.build(settings.shared, calls, notices, run_spent)
    report = Report.build(
        settings.mode.value,
        calls,
        budget_usd=settings.budget_usd,
        cassette_dir=str(settings.cassette_dir),
        recorded_keys=recording_keys(settings.cassette_dir),
        incomplete_because=incomplete_because(session, settings.mode, config.stash[SCOPE_KEY]),
        shared=shared,
    )
    add_cost_sections(config, psession, report, calls)
    if config.getoption("promptcache_prune"):
        result = config.stash[PRUNE_KEY] = prune(settings.cassette_dir, report)
        if result.refused is None:
            # The summary and the JSON report then say what was deleted, not that it still could be.
            report = report.model_copy(update={"pruned_recordings": result.deleted})
        elif session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.USAGE_ERROR
    config.stash[REPORT_KEY] = report
    unwritten = config.stash[UNWRITTEN_KEY] = _write_reports(config, report)
    if (report.budget_exceeded or report.nothing_saved) and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    if unwritten and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.USAGE_ERROR


def _write_reports(config: pytest.Config, report: Report) -> list[str]:
    """Write the reports asked for; one line for each that could not be written. Raising here instead
    would end the session with a traceback and no pytest summary, after the whole suite ran."""
    from ..report.markdown import append_github_summary, markdown
    from ..store.files import write_atomic

    unwritten: list[str] = []

    def attempt(what: str, write: Callable[[], None], fix: str) -> None:
        try:
            write()
        except OSError as exc:
            unwritten.append(f"promptcache: could not {what}: {exc.strerror or exc}; {fix}")

    base = config.invocation_params.dir
    json_path = config.getoption("promptcache_report")
    if json_path:
        path = base / json_path
        text = report.model_dump_json(indent=2) + "\n"
        fix = "give --promptcache-report a writable file path"
        attempt(f"write the JSON report to {path}", lambda: write_atomic(path, text), fix)
    html_path = config.getoption("promptcache_report_html")
    if html_path:
        path_html = base / html_path
        fix = "give --promptcache-report-html a writable file path"
        attempt(f"write the HTML report to {path_html}", lambda: write_html(path_html, report), fix)
    md_path = config.getoption("promptcache_report_md")
    summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if report.totals.calls and (md_path or summary):
        md = markdown(report)
        if md_path:
            path_md = base / md_path
            fix = "give --promptcache-report-md a writable file path"
            attempt(f"write the Markdown report to {path_md}", lambda: write_atomic(path_md, md), fix)
        if summary:
            what = f"append the report to $GITHUB_STEP_SUMMARY ({summary})"
            attempt(what, lambda: append_github_summary(md), "unset it or point it at a writable file")
    return unwritten


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    report = terminalreporter.config.stash.get(REPORT_KEY, None)
    prune = terminalreporter.config.stash.get(PRUNE_KEY, None)
    unwritten = terminalreporter.config.stash.get(UNWRITTEN_KEY, [])
    if report is None or (not report.totals.calls and prune is None and not unwritten):
        return
    from ..report.terminal import terminal_lines

    terminalreporter.write_sep("-", "promptcache")
    if prune is not None and prune.refused is not None:
        terminalreporter.write_line(
            f"--promptcache-prune refused, nothing was deleted: {prune.refused}. Unused recordings can "
            "only be known from a run of the whole suite in which every test passed.",
            red=True,
        )
    verbose = terminalreporter.config.get_verbosity() > 0
    for text, colour in terminal_lines(report, verbose):
        markup = {colour: True} if colour else {}
        terminalreporter.write_line(text, **markup)
    for line in unwritten:
        terminalreporter.write_line(line, red=True)
    if terminalreporter.config.inipath is None and report.mode != Mode.OFF.value:
        terminalreporter.write_line(no_config_file(report.cassette_dir), yellow=True)


def no_config_file(cassette_dir: str | None) -> str:
    # Without a configuration file the rootdir is wherever pytest was started (or its arguments' common
    # directory), and the recordings directory with it: `cd tests && pytest` looks in tests/cassettes.
    return (
        f"promptcache: no pytest configuration file, so the recordings directory ({cassette_dir}) moves "
        "with the directory pytest runs in: add a pytest.ini or pyproject.toml at your project's root that "
        "sets promptcache_dir (see Ten lines in the README)"
    )
