"""``promptcache serve``: the recording proxy outside pytest, for a developer's shell or an end-to-end run
(docker compose, a script that starts services), with the project's settings and recordings. Stopped by
SIGINT or SIGTERM, it prints the session report; its exit status says whether any call missed."""

from __future__ import annotations

import argparse
import os
import signal
import threading
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from ..coordination.statedir import UnsafeStateDir, check_state_dirs, state_dirs
from ..proxy.upstreams import UpstreamError, parse_upstreams
from ..session import CacheSession
from ..settings import Mode, Settings, SettingsError, build_settings, parse_mode
from .project import CliError, Project
from .render import display

if TYPE_CHECKING:
    from ..proxy.server import ProxyServer


SERVE_HELP = "run the recording proxy on 127.0.0.1 for clients outside pytest; the report when stopped"


def add_serve_arguments(sub: argparse.ArgumentParser) -> None:
    sub.add_argument(
        "--mode",
        metavar="MODE",
        default=None,
        help="replay (default), record, rewrite or off; else env PROMPTCACHE_MODE, ini promptcache_mode",
    )
    sub.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: any free one)")
    sub.add_argument(
        "--upstream",
        action="append",
        default=[],
        metavar="NAME=URL",
        help="forward /NAME/... to URL's host, e.g. openai=http://127.0.0.1:8080/v1 (repeatable; "
        "adds to ini promptcache_upstreams and the defaults: openai, anthropic, gemini)",
    )
    sub.add_argument("--report", metavar="PATH", help="also write the report as JSON to PATH when stopped")
    sub.add_argument("-v", "--verbose", action="store_true", help="the per-model table in the report")


def _settings(args: argparse.Namespace, project: Project) -> Settings:
    config = project.config
    cli_dir = str(Path(project.dir_arg).expanduser().resolve()) if project.dir_arg else None
    try:
        settings = build_settings(
            rootdir=config.rootdir, cli_mode=args.mode, cli_dir=cli_dir, env=os.environ, ini=config.ini
        )
        check_state_dirs(*state_dirs(settings.cassette_dir, settings.state_dir))
    except (SettingsError, UnsafeStateDir) as exc:
        raise CliError(str(exc)) from None
    except OSError as exc:
        raise CliError(f"cannot check the state directory: {exc}") from None
    return settings


def cmd_serve(args: argparse.Namespace, project: Project) -> int:
    if args.mode is not None:
        try:
            parse_mode(args.mode, "--mode")
        except SettingsError as exc:
            raise CliError(str(exc)) from None
    settings = _settings(args, project)
    ini_lines = project.config.ini.get("promptcache_upstreams") or ""
    lines = ini_lines.splitlines() if isinstance(ini_lines, str) else [str(line) for line in ini_lines]
    try:
        upstreams = parse_upstreams(lines, "ini promptcache_upstreams")
        upstreams.update(parse_upstreams(args.upstream, "--upstream", defaults=False))
    except UpstreamError as exc:
        raise CliError(str(exc)) from None
    if not 0 <= args.port <= 65535:
        raise CliError(f"--port: {args.port} is not a port (0 to 65535; 0 picks a free one)")

    # Imported now: the other commands need neither the engine nor pydantic to start.
    from ..proxy.server import ProxyServer

    session = CacheSession(settings)
    if session.guard is not None and settings.mode is Mode.REPLAY:
        session.guard.start_loading()
    try:
        proxy = ProxyServer(session, upstreams, port=args.port).start()
    except OSError as exc:
        raise CliError(f"cannot listen on 127.0.0.1:{args.port}: {exc.strerror or exc}") from None
    stopped = threading.Event()

    def stop(signum: int, frame: FrameType | None) -> None:
        stopped.set()

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        _banner(proxy, settings)
        # Short waits keep the main thread returning to the interpreter, where signal handlers run.
        while not stopped.is_set():
            stopped.wait(0.5)
    finally:
        proxy.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return _report(session, settings, args)


def _banner(proxy: ProxyServer, settings: Settings) -> None:
    print(f"promptcache serve: mode {settings.mode.value}, recordings in {display(settings.cassette_dir)}")
    print(f"listening on {proxy.url}")
    bases = proxy.base_urls
    width, url_width = max(len(name) for name in bases), max(len(url) for url in bases.values())
    for name, upstream in proxy.upstreams.items():
        print(f"  {name:<{width}}  {bases[name]:<{url_width}}  ->  {upstream.url}")
    print("for clients:")
    for variable, value in proxy.env.items():
        if variable.lower() != "no_proxy":
            print(f"  {variable}={value}")
    print("stop with Ctrl-C or SIGTERM: the report is printed then", flush=True)


def _report(session: CacheSession, settings: Settings, args: argparse.Namespace) -> int:
    from ..report.model import Report
    from ..report.terminal import terminal_lines
    from ..store.files import write_atomic

    engine = session.started_engine
    calls = engine.ledger.records() if engine is not None else []
    calls += [event.record() for event in session.refusals]
    report = Report.build(
        settings.mode.value,
        calls,
        budget_usd=settings.budget_usd,
        cassette_dir=str(settings.cassette_dir),
        incomplete_because="promptcache serve cannot know which recordings a suite needs",
    )
    print("-" * 30 + " promptcache " + "-" * 30)
    lines = [text for text, _ in terminal_lines(report, args.verbose)] if report.totals.calls else []
    print("\n".join(lines) or "no LLM calls", flush=True)
    # A call that missed (or that the budget refused), or a refused request: a CI job must notice.
    status = 1 if report.totals.misses or report.totals.refused else 0
    if args.report:
        path = Path(args.report)
        try:
            write_atomic(path, report.model_dump_json(indent=2) + "\n")
        except OSError as exc:
            reason = exc.strerror or exc
            print(f"promptcache: could not write the JSON report to {path}: {reason}", flush=True)
            return 2
    return status
