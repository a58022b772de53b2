"""The ``promptcache`` command: list, read, compare, prune and check the recordings a suite committed.

An adapter like ``plugin.py``, over the same core. It never imports pytest: it finds the recordings
directory by reading pytest's configuration files itself, so it starts fast and runs where only the
recordings and this package are (a pre-commit hook, a CI step that checks a pull request).

Exit codes: 0 all good, 1 something was found (a problem, a corrupt recording), 2 the command could not
do what was asked (bad arguments, no directory, unknown key, unreadable report or configuration).
"""

from __future__ import annotations

import argparse
import configparser
import difflib
import json
import os
import re
import sys
import tomllib
import urllib.parse
from collections.abc import Callable, Container, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import cached_property
from pathlib import Path
from typing import Any

from .. import __version__
from ..ledger import NO_MODEL
from ..migrate import migrate_directory
from ..miss import pretty_request
from ..models import SCHEMA_VERSION, CanonicalRequest, RecordedResponse, Recording, SSEEvent, TokenUsage
from ..prices import usd
from ..scrub import REDACTED, secret_env_values
from ..settings import DEFAULT_SECRET_HEADERS, DEFAULT_SECRET_PARAMS, DEFAULT_SECRET_PATTERNS
from ..store.files import SUFFIX, TMP_SUFFIX, CorruptRecording, read_recording
from ..usage import PriceBook, PriceError, api_family, extract, parse_prices

DEFAULT_DIR = "cassettes"
MIN_PREFIX = 4
KEY_RE = re.compile(r"[0-9a-f]{64}")
# Files git needs in an otherwise committed directory; they hold no recording and leak nothing.
GIT_FILES = frozenset({".gitkeep", ".gitignore", ".gitattributes"})
PATTERN_NAMES = dict(
    zip(
        DEFAULT_SECRET_PATTERNS,
        (
            "an Anthropic key (sk-ant-...)",
            "an OpenAI key (sk-...)",
            "a Google API key (AIza...)",
            "a bearer token",
        ),
        strict=True,
    )
)


class CliError(Exception):
    """The command cannot do what was asked; the message says why and what to do."""

    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.code = code


# -- the pytest configuration, read the way pytest finds it ------------------------------------------


@dataclass(frozen=True)
class ProjectConfig:
    rootdir: Path
    inifile: Path | None
    ini: Mapping[str, Any]

    def string(self, name: str) -> str:
        value = self.ini.get(name)
        if value is None:
            return ""
        if isinstance(value, list):
            return "\n".join(str(v) for v in value).strip()
        return str(value).strip()

    def lines(self, name: str) -> list[str]:
        value = self.ini.get(name)
        if value is None:
            return []
        items = [str(v) for v in value] if isinstance(value, list) else str(value).splitlines()
        return [line.strip() for line in items if line.strip()]


def _ini_section(path: Path, section: str) -> dict[str, str] | None:
    # Like pytest's iniconfig: no interpolation, keys as written, later duplicates win.
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(path.read_text(encoding="utf-8"), source=str(path))
    if not parser.has_section(section):
        return None
    return {k: v.strip() for k, v in parser.items(section, raw=True)}


def _toml(path: Path) -> dict[str, Any]:
    return tomllib.loads(path.read_text(encoding="utf-8"))


def _load_pytest_toml(path: Path) -> dict[str, Any] | None:
    table = _toml(path).get("pytest")
    return table if isinstance(table, dict) else {}


def _load_pytest_ini(path: Path) -> dict[str, Any] | None:
    return _ini_section(path, "pytest") or {}


def _load_pyproject(path: Path) -> dict[str, Any] | None:
    tool = _toml(path).get("tool")
    table = tool.get("pytest") if isinstance(tool, dict) else None
    if not isinstance(table, dict):
        return None
    native = {k: v for k, v in table.items() if k != "ini_options"}
    if native:
        return native
    ini_options = table.get("ini_options")
    return ini_options if isinstance(ini_options, dict) else None


def _load_tox(path: Path) -> dict[str, Any] | None:
    return _ini_section(path, "pytest")


def _load_setup_cfg(path: Path) -> dict[str, Any] | None:
    return _ini_section(path, "tool:pytest")


# pytest's order of precedence in one directory; a file whose loader returns None is not a config.
CONFIG_LOADERS: tuple[tuple[str, Callable[[Path], dict[str, Any] | None]], ...] = (
    ("pytest.toml", _load_pytest_toml),
    (".pytest.toml", _load_pytest_toml),
    ("pytest.ini", _load_pytest_ini),
    (".pytest.ini", _load_pytest_ini),
    ("pyproject.toml", _load_pyproject),
    ("tox.ini", _load_tox),
    ("setup.cfg", _load_setup_cfg),
)


def find_config(start: Path) -> ProjectConfig:
    """The rootdir and ini values pytest would use when run with no arguments in ``start``."""
    start = start.resolve()
    first_pyproject: Path | None = None
    for base in (start, *start.parents):
        for name, loader in CONFIG_LOADERS:
            path = base / name
            if not path.is_file():
                continue
            if name == "pyproject.toml" and first_pyproject is None:
                first_pyproject = path
            try:
                ini = loader(path)
            except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError, configparser.Error) as exc:
                raise CliError(f"cannot read the pytest configuration {path}: {exc}") from None
            if ini is not None:
                return ProjectConfig(base, path, ini)
    # pytest's fallbacks when no file configures it: a pyproject.toml, then a setup.py, marks the root.
    if first_pyproject is not None:
        return ProjectConfig(first_pyproject.parent, first_pyproject, {})
    for base in (start, *start.parents):
        if (base / "setup.py").is_file():
            return ProjectConfig(base, None, {})
    return ProjectConfig(start, None, {})


class Project:
    """What every command needs, computed on first use: the configuration, directory, prices."""

    def __init__(self, dir_arg: str | None) -> None:
        self.dir_arg = dir_arg

    @cached_property
    def config(self) -> ProjectConfig:
        return find_config(Path.cwd())

    @cached_property
    def directory(self) -> Path:
        if self.dir_arg:
            return Path(self.dir_arg).expanduser().resolve()
        raw = self.config.string("promptcache_dir") or DEFAULT_DIR
        return (self.config.rootdir / Path(raw).expanduser()).resolve()

    def existing_directory(self) -> Path:
        directory = self.directory
        if not directory.exists():
            raise CliError(
                f"no recordings directory at {directory}; record with pytest --promptcache=record, "
                "or pass --dir"
            )
        if not directory.is_dir():
            raise CliError(f"{directory} is not a directory; pass --dir with the recordings directory")
        return directory

    @cached_property
    def prices(self) -> PriceBook:
        try:
            return PriceBook(parse_prices(self.config.lines("promptcache_prices")))
        except PriceError as exc:
            raise CliError(f"{self.config.inifile}: {exc}") from None

    @cached_property
    def secret_patterns(self) -> list[tuple[re.Pattern[str], str]]:
        found: list[tuple[re.Pattern[str], str]] = []
        for pattern in (*DEFAULT_SECRET_PATTERNS, *self.config.lines("promptcache_secret_patterns")):
            try:
                found.append((re.compile(pattern), PATTERN_NAMES.get(pattern, f"the pattern {pattern!r}")))
            except re.error as exc:
                raise CliError(f"promptcache_secret_patterns: {pattern!r} is not a regex: {exc}") from None
        return found

    @cached_property
    def secret_headers(self) -> frozenset[str]:
        extra = self.config.lines("promptcache_secret_headers")
        return frozenset(h.lower() for h in (*DEFAULT_SECRET_HEADERS, *extra))

    @cached_property
    def secret_params(self) -> frozenset[str]:
        extra = self.config.lines("promptcache_secret_params")
        return frozenset(p.lower() for p in (*DEFAULT_SECRET_PARAMS, *extra))


# -- recordings ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Unreadable:
    path: Path
    reason: str


@dataclass(frozen=True)
class Entry:
    """A readable recording with what the listings show about it."""

    path: Path
    recording: Recording
    size: int
    usage: TokenUsage | None
    model: str | None
    cost: Decimal | None

    @property
    def key(self) -> str:
        return self.recording.key

    @property
    def recorded_at(self) -> datetime:
        return utc(self.recording.meta.recorded_at)

    @property
    def priced(self) -> bool:
        return self.cost is not None

    def tokens_cell(self) -> str:
        return "-" if self.usage is None else f"{self.usage.input_tokens:,}/{self.usage.output_tokens:,}"

    def cost_cell(self) -> str:
        if self.usage is None:
            return "-"
        return "unpriced" if self.cost is None else usd(float(self.cost))

    def as_json(self) -> dict[str, Any]:
        request, meta = self.recording.request, self.recording.meta
        return {
            "key": self.key,
            "file": str(self.path),
            "method": request.method,
            "host": request.host,
            "path": request.path,
            "url": meta.url,
            "model": self.model,
            "recorded_at": iso(self.recorded_at),
            "test": meta.test,
            "status": self.recording.response.status,
            "stream": self.recording.response.is_stream,
            "usage": None if self.usage is None else self.usage.model_dump(),
            "cost_usd": None if self.cost is None else float(self.cost),
            "size_bytes": self.size,
        }


def utc(moment: datetime) -> datetime:
    # A hand-written recorded_at without an offset is taken as UTC, which is what the plugin writes.
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def when(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def recording_files(directory: Path) -> list[Path]:
    """The files that are recordings by name, as the store sees them: ``<name>.json``, not hidden."""
    return sorted(
        Path(item.path)
        for item in os.scandir(directory)
        if item.name.endswith(SUFFIX) and not item.name.startswith(".") and item.is_file()
    )


def price(recording: Recording, prices: PriceBook) -> tuple[TokenUsage | None, str | None, Decimal | None]:
    """Usage, model and cost at recorded_at, the way the session report prices a replayed call."""
    request, response = recording.request, recording.response
    family = api_family(request.path)
    usage, response_model = (None, None) if response.status >= 400 else extract(response, family)
    model = request.model or response_model
    if usage is None:
        return None, model, None
    url = recording.meta.url.split("?", 1)[0]
    at = utc(recording.meta.recorded_at)
    return usage, model, prices.cost(usage, (response_model, request.model), family, url, at)


def load(path: Path, prices: PriceBook) -> Entry:
    recording = read_recording(path)
    usage, model, cost = price(recording, prices)
    return Entry(path, recording, path.stat().st_size, usage, model, cost)


def load_all(directory: Path, prices: PriceBook) -> tuple[list[Entry], list[Unreadable]]:
    entries: list[Entry] = []
    errors: list[Unreadable] = []
    for path in recording_files(directory):
        try:
            entries.append(load(path, prices))
        except CorruptRecording as exc:
            errors.append(Unreadable(path, exc.reason))
        except OSError as exc:
            errors.append(Unreadable(path, f"cannot be read ({exc.strerror or exc})"))
    entries.sort(key=lambda e: (e.recorded_at, e.key))
    return entries, errors


def print_unreadable(errors: Sequence[Unreadable]) -> None:
    if not errors:
        return
    sys.stdout.flush()
    print(f"\n{plural(len(errors), 'recording file')} could not be read:", file=sys.stderr)
    for error in errors:
        print(f"  {display(error.path)}: {error.reason}", file=sys.stderr)


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}" + ("" if count == 1 else "s")


def display(path: Path) -> str:
    """A path as short as it can be while still working from the current directory."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def resolve_key(directory: Path, text: str) -> Path:
    """The recording a full key, a unique key prefix, or a recording's file name points at."""
    prefix = Path(text).name.removesuffix(SUFFIX).lower()
    if len(prefix) < MIN_PREFIX:
        raise CliError(f"key prefix {text!r} is too short: give at least {MIN_PREFIX} characters")
    names = [p.name.removesuffix(SUFFIX) for p in recording_files(directory)]
    if prefix in names:
        return directory / f"{prefix}{SUFFIX}"
    matches = [name for name in names if name.startswith(prefix)]
    if not matches:
        raise CliError(f"no recording with key {text!r} in {directory} (promptcache ls lists them)")
    if len(matches) > 1:
        lines = [f"key prefix {text!r} matches {len(matches)} recordings; give more characters:"]
        for name in matches[:20]:
            lines.append("  " + describe(directory / f"{name}{SUFFIX}"))
        if len(matches) > 20:
            lines.append(f"  ... and {len(matches) - 20} more")
        raise CliError("\n".join(lines))
    return directory / f"{matches[0]}{SUFFIX}"


def describe(path: Path) -> str:
    """One line naming a recording for a person choosing between several."""
    name = path.name.removesuffix(SUFFIX)
    try:
        recording = read_recording(path)
    except (CorruptRecording, OSError):
        return f"{name}  (unreadable)"
    request, meta = recording.request, recording.meta
    return f"{name}  {when(utc(meta.recorded_at))}  {request.endpoint}  {meta.test or '-'}"


# -- rendering requests and responses ----------------------------------------------------------------


def compact(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def pretty(value: Any) -> list[str]:
    # The response keeps the provider's key order, as the file does; the request is already sorted.
    return json.dumps(value, indent=2, ensure_ascii=False).splitlines()


def event_line(ev: SSEEvent) -> str:
    parts = [
        f"{name}={value}"
        for name, value in (("event", ev.event), ("id", ev.id), ("retry", ev.retry))
        if value is not None
    ]
    if ev.text is not None:
        # One line per event, whatever the data held: multi-line text data shows its newlines as \n.
        parts.append(ev.text.replace("\n", "\\n"))
    elif ev.data is not None:
        parts.append(compact(ev.data))
    return " ".join(parts)


def body_lines(response: RecordedResponse) -> list[str]:
    if response.events is not None:
        return [event_line(ev) for ev in response.events]
    if response.body is not None:
        return pretty(response.body)
    if response.text is not None:
        return response.text.splitlines()
    if response.base64 is not None:
        return [f"({len(response.base64)} characters of base64: a binary body)"]
    return ["(empty body)"]


def request_body_lines(request: CanonicalRequest) -> list[str]:
    if request.body is not None:
        return json.dumps(request.body, indent=2, sort_keys=True, ensure_ascii=False).splitlines()
    if request.body_text is not None:
        return request.body_text.splitlines()
    if request.body_sha256 is not None:
        return [f"(binary body, sha256 {request.body_sha256})"]
    return ["(no body)"]


def _text_pieces(data: Mapping[str, Any]) -> Iterator[tuple[int, str]]:
    """(choice index, text) of one stream chunk, for each wire format whose deltas carry text."""
    kind = data.get("type")
    delta = data.get("delta")
    if kind == "content_block_delta" and isinstance(delta, dict) and delta.get("type") == "text_delta":
        if isinstance(delta.get("text"), str):
            yield 0, delta["text"]
        return
    if kind == "response.output_text.delta" and isinstance(delta, str):
        yield 0, delta
        return
    for choice in data.get("choices") or ():
        if not isinstance(choice, dict):
            continue
        index = _index(choice)
        inner = choice.get("delta")
        if isinstance(inner, dict) and isinstance(inner.get("content"), str):
            yield index, inner["content"]
        elif isinstance(choice.get("text"), str):  # the legacy completions endpoint
            yield index, choice["text"]
    for candidate in data.get("candidates") or ():
        if not isinstance(candidate, dict):
            continue
        index = _index(candidate)
        content = candidate.get("content")
        for part in content.get("parts") or () if isinstance(content, dict) else ():
            # Gemini's thought summaries are not the answer.
            if isinstance(part, dict) and isinstance(part.get("text"), str) and not part.get("thought"):
                yield index, part["text"]


def _index(item: Mapping[str, Any]) -> int:
    value = item.get("index")
    return value if isinstance(value, int) else 0


def assembled_text(events: Iterable[SSEEvent]) -> dict[int, str] | None:
    """The text a client would have put together from the stream, per choice; None if none carried text."""
    texts: dict[int, list[str]] = {}
    for ev in events:
        if isinstance(ev.data, dict):
            for index, piece in _text_pieces(ev.data):
                texts.setdefault(index, []).append(piece)
    if not texts:
        return None
    return {index: "".join(pieces) for index, pieces in sorted(texts.items())}


def tokens_text(usage: TokenUsage) -> str:
    cached = f" ({usage.cached_input_tokens:,} cached)" if usage.cached_input_tokens else ""
    written = f" ({usage.cache_write_tokens:,} written to cache)" if usage.cache_write_tokens else ""
    return f"{usage.input_tokens:,} in{cached}{written}, {usage.output_tokens:,} out"


# -- commands --------------------------------------------------------------------------------------


def parse_age(text: str) -> timedelta:
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([hdw])\s*", text.lower())
    if match is None:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an age; write a number and h, d or w: 12h, 30d, 2w"
        )
    number, unit = float(match[1]), match[2]
    return timedelta(hours=number) if unit == "h" else timedelta(days=number * (7 if unit == "w" else 1))


def cmd_ls(args: argparse.Namespace, project: Project) -> int:
    directory = project.existing_directory()
    entries, errors = load_all(directory, project.prices)
    total = len(entries)
    cutoff = datetime.now(UTC) - args.older_than if args.older_than is not None else None

    def keep(entry: Entry) -> bool:
        request, meta = entry.recording.request, entry.recording.meta
        endpoint = f"{request.endpoint} {request.method} {request.path} {meta.url}".lower()
        return (
            (args.model is None or args.model.lower() in (entry.model or "").lower())
            and (args.test is None or args.test.lower() in (meta.test or "").lower())
            and (args.endpoint is None or args.endpoint.lower() in endpoint)
            and (cutoff is None or entry.recorded_at < cutoff)
        )

    entries = [e for e in entries if keep(e)]
    if args.json:
        out = {
            "directory": str(directory),
            "recordings": [e.as_json() for e in entries],
            "errors": [{"file": str(u.path), "reason": u.reason} for u in errors],
        }
        print(json.dumps(out, indent=2, ensure_ascii=False))
        return 1 if errors else 0
    if not entries:
        print(f"no recordings in {display(directory)}" + (f" match (of {total})" if total else ""))
    else:
        header = ("key", "endpoint", "host", "model", "recorded_at (UTC)", "tokens in/out", "cost", "test")
        rows = [
            (
                e.key[:12],
                f"{e.recording.request.method} {e.recording.request.path}",
                e.recording.request.host,
                e.model or "-",
                when(e.recorded_at),
                e.tokens_cell(),
                e.cost_cell(),
                e.recording.meta.test or "-",
            )
            for e in entries
        ]
        print_table(header, rows, right={5, 6})
        print()
        print(summary_line(entries, total, directory))
    print_unreadable(errors)
    return 1 if errors else 0


def summary_line(entries: Sequence[Entry], total: int, directory: Path) -> str:
    shown = (
        f"{len(entries)} of {plural(total, 'recording')}"
        if len(entries) != total
        else plural(total, "recording")
    )
    tokens_in = sum(e.usage.input_tokens for e in entries if e.usage)
    tokens_out = sum(e.usage.output_tokens for e in entries if e.usage)
    cost = sum((e.cost for e in entries if e.cost is not None), Decimal(0))
    unpriced = sum(1 for e in entries if e.usage is not None and e.cost is None)
    line = (
        f"{shown} in {display(directory)}: {tokens_in:,} tokens in, {tokens_out:,} out, "
        f"{usd(float(cost))} when recorded"
    )
    return line + (f" ({unpriced} unpriced)" if unpriced else "")


def print_table(header: Sequence[str], rows: Sequence[Sequence[str]], right: Container[int] = ()) -> None:
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]
    for row in (header, *rows):
        cells = [
            c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        print("  ".join(cells).rstrip())


def cmd_show(args: argparse.Namespace, project: Project) -> int:
    directory = project.existing_directory()
    path = resolve_key(directory, args.key)
    try:
        entry = load(path, project.prices)
    except CorruptRecording as exc:
        raise CliError(str(exc), code=1) from None
    recording = entry.recording
    request, response, meta = recording.request, recording.response, recording.meta
    fields = [
        ("key", recording.key),
        ("file", display(path)),
        ("test", meta.test or "-"),
        ("recorded_at", f"{when(entry.recorded_at)} UTC"),
        ("model", entry.model or "-"),
        ("tokens", "-" if entry.usage is None else tokens_text(entry.usage)),
        ("cost", entry.cost_cell() + (" at recorded_at prices" if entry.priced else "")),
        ("latency", f"{meta.latency_ms:g} ms"),
    ]
    print(f"{request.method} {meta.url}")
    for name, value in fields:
        print(f"{name:<12} {value}")
    if request.query:
        print("\n-- request query (part of the key)")
        for k, v in request.query:
            print(f"{k}={v}")
    if request.headers:
        print("\n-- request headers (part of the key)")
        for k, v in request.headers.items():
            print(f"{k}: {v}")
    print("\n-- request body")
    print("\n".join(request_body_lines(request)))
    content_type = response.headers.get("content-type", "no content-type")
    count = f", {len(response.events)} events" if response.events is not None else ""
    print(f"\n-- response {response.status} ({content_type}{count})")
    print("\n".join(body_lines(response)))
    if response.events is not None:
        texts = assembled_text(response.events)
        if texts is not None:
            for index, text in texts.items():
                label = "" if len(texts) == 1 else f" of choice {index}"
                print(f"\n-- assembled text{label}")
                print(text)
    return 0


def cmd_diff(args: argparse.Namespace, project: Project) -> int:
    directory = project.existing_directory()
    paths = [resolve_key(directory, key) for key in (args.key_a, args.key_b)]
    recordings: list[Recording] = []
    for path in paths:
        try:
            recordings.append(read_recording(path))
        except CorruptRecording as exc:
            raise CliError(str(exc), code=1) from None
    a, b = recordings
    ka, kb = a.key[:12], b.key[:12]
    for what, old, new in (
        ("request", pretty_request(a.request), pretty_request(b.request)),
        ("response", response_lines(a.response), response_lines(b.response)),
    ):
        diff = list(
            difflib.unified_diff(old, new, f"{ka} {what}", f"{kb} {what}", n=args.context, lineterm="")
        )
        print("\n".join(diff) if diff else f"{what}s are identical")
    return 0


def response_lines(response: RecordedResponse) -> list[str]:
    # Headers are left out: dates and request ids differ between any two recordings and hide the rest.
    return [f"status: {response.status}", *body_lines(response)]


def cmd_prune(args: argparse.Namespace, project: Project) -> int:
    report_path = Path(args.unused)
    try:
        report = json.loads(report_path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise CliError(f"cannot read the report {report_path}: {exc.strerror or exc}") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise CliError(f"the report {report_path} is not JSON: {exc}") from None
    if not isinstance(report, dict) or "unused_recordings" not in report:
        raise CliError(
            f"the report {report_path} has no unused_recordings list; write one with a full run: "
            "pytest --promptcache-report=REPORT.json (no -k, no test selection)"
        )
    if report.get("unused_recordings_complete") is False:
        raise CliError(
            f"the report {report_path} comes from a partial run (unused_recordings_complete is false): "
            "recordings the other tests use would look unused. Prune only from a report of a full run"
        )
    listed = report["unused_recordings"]
    if not isinstance(listed, list) or not all(isinstance(k, str) for k in listed):
        raise CliError(f"the report {report_path}: unused_recordings is not a list of keys")
    keys = [k.removesuffix(SUFFIX) for k in listed]
    # A key becomes a path; anything but a SHA-256 could name a file outside the directory.
    bad = [k for k in keys if not KEY_RE.fullmatch(k)]
    if bad:
        raise CliError(
            f"the report {report_path} lists {len(bad)} entries that are not recording keys "
            f"(e.g. {bad[0]!r}); nothing was deleted"
        )
    directory = project.existing_directory()
    if not keys:
        print(f"{report_path} lists no unused recordings: nothing to delete")
        return 0
    verb = "would delete" if args.dry_run else "deleted"
    done, freed, missing = 0, 0, 0
    for key in dict.fromkeys(keys):
        path = directory / f"{key}{SUFFIX}"
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            missing += 1
            print(f"already gone: {display(path)}")
            continue
        test = _test_of(path)
        if not args.dry_run:
            try:
                path.unlink()
            except FileNotFoundError:
                missing += 1
                continue
        done += 1
        freed += size
        print(f"{verb} {display(path)}" + (f"  ({test})" if test else ""))
    tail = "; nothing was deleted (dry run)" if args.dry_run else ""
    gone = f", {missing} already gone" if missing else ""
    print(f"{verb} {plural(done, 'recording')} ({human_size(freed)}) from {display(directory)}{gone}{tail}")
    return 0


def _test_of(path: Path) -> str | None:
    try:
        return read_recording(path).meta.test
    except (CorruptRecording, OSError):
        return None


# -- verify ----------------------------------------------------------------------------------------


@dataclass
class Findings:
    lines: list[str] = field(default_factory=list)

    def add(self, path: Path, message: str, line: int | None = None) -> None:
        where = display(path) + (f":{line}" if line is not None else "")
        self.lines.append(f"{where}: {message}")


def shown(secret: str) -> str:
    return secret[:6] + "…"


def scan_secrets(
    path: Path, text: str, project: Project, env_secrets: Mapping[str, str], out: Findings
) -> None:
    for number, line in enumerate(text.splitlines(), start=1):
        spans: list[tuple[int, int]] = []
        for value, name in env_secrets.items():
            # A value with quotes or backslashes appears escaped in JSON text.
            for form in dict.fromkeys((value, json.dumps(value, ensure_ascii=False)[1:-1])):
                start = line.find(form)
                if start >= 0:
                    spans.append((start, start + len(form)))
                    out.add(path, f"the value of ${name} ({shown(value)})", number)
                    break
        for pattern, label in project.secret_patterns:
            for match in pattern.finditer(line):
                if any(s < match.end() and match.start() < e for s, e in spans):
                    continue  # already reported as an environment variable's value
                spans.append(match.span())
                out.add(path, f"what looks like {label} ({shown(match.group())})", number)


def check_recording(path: Path, text: str, project: Project, out: Findings) -> bool:
    """Schema, key and secret names of one recording file; True if it is a usable recording."""
    try:
        json.loads(text)
    except json.JSONDecodeError as exc:
        out.add(path, f"not valid JSON: {exc.msg} (column {exc.colno})", exc.lineno)
        return False
    try:
        recording = read_recording(path)
    except CorruptRecording as exc:
        out.add(path, f"unusable recording: {exc.reason}")
        return False
    # read_recording has checked that the request still hashes to the key.
    lines = text.splitlines()

    def line_of(needle: str) -> int | None:
        return next((i for i, line in enumerate(lines, start=1) if needle in line), None)

    for where, headers in (("request", recording.request.headers), ("response", recording.response.headers)):
        for name in headers:
            if name.lower() in project.secret_headers:
                out.add(
                    path, f"{where} header {name!r} is stored; it carries secrets", line_of(json.dumps(name))
                )
    params = list(recording.request.query)
    params += urllib.parse.parse_qsl(urllib.parse.urlsplit(recording.meta.url).query, keep_blank_values=True)
    for name, value in params:
        if name.lower() in project.secret_params and value != REDACTED:
            out.add(
                path,
                f"query parameter {name!r} is stored with a value; it carries secrets",
                line_of(f"{name}="),
            )
    return True


def cmd_verify(args: argparse.Namespace, project: Project) -> int:
    out = Findings()
    env_secrets = {
        value: placeholder.removeprefix("<redacted:").removesuffix(">")
        for value, placeholder in secret_env_values(os.environ).items()
    }
    if args.files:
        targets = [Path(f) for f in args.files]
        where = "the files given"
    else:
        directory = project.existing_directory()
        targets = sorted(Path(item.path) for item in os.scandir(directory))
        where = display(directory)
    recordings = 0
    for path in targets:
        name = path.name
        if not path.exists():
            out.add(path, "no such file")
            continue
        if path.is_dir():
            out.add(
                path, "a directory, not a recording: recordings are the .json files directly in the directory"
            )
            continue
        try:
            raw = path.read_bytes()
        except OSError as exc:
            out.add(path, f"cannot be read ({exc.strerror or exc})")
            continue
        text = raw.decode("utf-8", errors="replace")
        if name.startswith(".") and name.endswith(TMP_SUFFIX):
            out.add(
                path,
                "a temp file left by an interrupted write; delete it (a pytest run that records also does)",
            )
        elif name.endswith(SUFFIX) and not name.startswith("."):
            recordings += check_recording(path, text, project, out)
        elif name not in GIT_FILES:
            out.add(path, "not a recording: only <key>.json files belong in the recordings directory")
        scan_secrets(path, text, project, env_secrets, out)
    for line in out.lines:
        print(line)
    checked = f"{plural(len(targets), 'file')} ({plural(recordings, 'recording')}) in {where}"
    if out.lines:
        print(f"promptcache verify: {plural(len(out.lines), 'problem')} in {checked}")
        return 1
    print(f"promptcache verify: {checked}: no problems")
    return 0


# -- stats -----------------------------------------------------------------------------------------


@dataclass
class Tally:
    recordings: int = 0
    size: int = 0
    input_tokens: int = 0
    cached_input_tokens: int = 0
    output_tokens: int = 0
    cost: Decimal = Decimal(0)
    without_usage: int = 0
    unpriced: int = 0

    def add(self, entry: Entry) -> None:
        self.recordings += 1
        self.size += entry.size
        if entry.usage is None:
            self.without_usage += 1
            return
        self.input_tokens += entry.usage.input_tokens
        self.cached_input_tokens += entry.usage.cached_input_tokens
        self.output_tokens += entry.usage.output_tokens
        if entry.cost is None:
            self.unpriced += 1
        else:
            self.cost += entry.cost

    def cost_cell(self) -> str:
        # Never a silent $0 for recordings nobody could price.
        if self.unpriced and self.unpriced + self.without_usage == self.recordings:
            return "unpriced"
        if self.without_usage == self.recordings:
            return "-"
        return usd(float(self.cost)) + ("+?" if self.unpriced else "")

    def as_json(self) -> dict[str, Any]:
        return {
            "recordings": self.recordings,
            "size_bytes": self.size,
            "input_tokens": self.input_tokens,
            "cached_input_tokens": self.cached_input_tokens,
            "output_tokens": self.output_tokens,
            "cost_usd": float(self.cost),
            "without_usage": self.without_usage,
            "unpriced": self.unpriced,
        }


def human_size(size: int) -> str:
    if size < 1024:
        return f"{size} B"
    if size < 1024 * 1024:
        return f"{size / 1024:.1f} KiB"
    return f"{size / (1024 * 1024):.1f} MiB"


def cmd_migrate(args: argparse.Namespace, project: Project) -> int:
    directory = project.existing_directory()
    results = migrate_directory(directory, project.prices, dry_run=args.dry_run)
    failed = [r for r in results if r.error is not None]
    for result in results:
        if result.error is not None:
            print(f"{display(result.path)}: not migrated: {result.error}")
        else:
            verb = "would migrate" if args.dry_run else "migrated"
            print(f"{verb} {display(result.path)} (schema {result.old_version} -> {SCHEMA_VERSION})")
    done = len(results) - len(failed)
    if args.dry_run:
        print(
            f"would migrate {plural(done, 'recording')} in {display(directory)}; "
            "nothing was written (dry run)"
        )
    else:
        print(f"{plural(done, 'recording')} migrated to schema {SCHEMA_VERSION} in {display(directory)}")
    return 1 if failed else 0


def cmd_stats(args: argparse.Namespace, project: Project) -> int:
    directory = project.existing_directory()
    entries, errors = load_all(directory, project.prices)
    totals = Tally()
    by_model: dict[str, Tally] = {}
    for entry in entries:
        totals.add(entry)
        by_model.setdefault(entry.model or NO_MODEL, Tally()).add(entry)
    by_model = dict(sorted(by_model.items()))
    if args.json:
        out = {
            "directory": str(directory),
            "totals": totals.as_json(),
            "by_model": {m: t.as_json() for m, t in by_model.items()},
            "errors": [{"file": str(u.path), "reason": u.reason} for u in errors],
        }
        print(json.dumps(out, indent=2, ensure_ascii=False))
        return 1 if errors else 0
    print(f"{plural(totals.recordings, 'recording')} in {display(directory)}, {human_size(totals.size)}")
    if entries:
        print()
        header = ("model", "recordings", "size", "input", "cached", "output", "cost when recorded")
        rows = [_stats_row(model, tally) for model, tally in (*by_model.items(), ("total", totals))]
        print_table(header, rows, right={1, 2, 3, 4, 5, 6})
    if totals.without_usage:
        print(
            f"\n{plural(totals.without_usage, 'recording')} without usage "
            "(e.g. streams without include_usage, errors): not in the totals"
        )
    unpriced = [model for model, tally in by_model.items() if tally.unpriced]
    if unpriced:
        print(
            f"\nunpriced: {', '.join(unpriced)} ({plural(totals.unpriced, 'recording')}; "
            "tokens counted, no dollars): add them to ini promptcache_prices"
        )
    print_unreadable(errors)
    return 1 if errors else 0


def _stats_row(model: str, t: Tally) -> tuple[str, ...]:
    return (
        model,
        str(t.recordings),
        human_size(t.size),
        f"{t.input_tokens:,}",
        f"{t.cached_input_tokens:,}",
        f"{t.output_tokens:,}",
        t.cost_cell(),
    )


# -- the command line ------------------------------------------------------------------------------

Handler = Callable[[argparse.Namespace, Project], int]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="promptcache",
        description="Look at, compare, prune and check the LLM recordings pytest-promptcache made.",
        epilog="The directory is the one the pytest configuration of the current directory names "
        "(ini promptcache_dir, default cassettes, relative to the rootdir) unless --dir is given. "
        "Exit status: 0 fine, 1 problems found, 2 usage error.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    dir_help = "recordings directory (default: promptcache_dir of the pytest configuration, or cassettes)"
    parser.add_argument("--dir", metavar="DIR", default=None, help=dir_help)
    # The same option after the command; SUPPRESS keeps it from overwriting a --dir given before it.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--dir", metavar="DIR", default=argparse.SUPPRESS, help=dir_help)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    def command(name: str, handler: Handler, help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, parents=[common], help=help_text, description=help_text)
        sub.set_defaults(handler=handler)
        return sub

    ls = command("ls", cmd_ls, "list recordings, oldest first, with tokens and cost when recorded")
    ls.add_argument("--model", metavar="SUBSTR", help="only recordings whose model contains SUBSTR")
    ls.add_argument("--test", metavar="SUBSTR", help="only recordings whose test node id contains SUBSTR")
    ls.add_argument(
        "--endpoint", metavar="SUBSTR", help="only recordings whose method, host or path contain SUBSTR"
    )
    ls.add_argument(
        "--older-than", metavar="AGE", type=parse_age, help="only recordings older than AGE: 12h, 30d, 2w"
    )
    ls.add_argument("--json", action="store_true", help="machine-readable output")

    show = command("show", cmd_show, "print one recording's request and response")
    show.add_argument(
        "key",
        metavar="KEY",
        help=f"a key, a unique prefix of one (at least {MIN_PREFIX} characters) or a file name",
    )

    diff = command("diff", cmd_diff, "unified diff of two recordings' requests and responses")
    diff.add_argument("key_a", metavar="KEY")
    diff.add_argument("key_b", metavar="KEY")
    diff.add_argument(
        "-U", "--context", type=int, default=3, metavar="N", help="lines of context (default 3)"
    )

    prune = command("prune", cmd_prune, "delete the recordings a full test run did not use")
    prune.add_argument(
        "--unused",
        metavar="REPORT.json",
        required=True,
        help="a report of a full run (pytest --promptcache-report=REPORT.json); its unused_recordings go",
    )
    prune.add_argument("--dry-run", action="store_true", help="list what would be deleted; delete nothing")

    verify = command(
        "verify",
        cmd_verify,
        "check recordings: schema, key, no secrets, no stray files (exit 1 if anything is found)",
    )
    verify.add_argument(
        "files",
        nargs="*",
        metavar="FILE",
        help="check only these files (as pre-commit passes them); default: the whole directory",
    )

    migrate = command(
        "migrate", cmd_migrate, "rewrite recordings of older schema versions in the current one"
    )
    migrate.add_argument("--dry-run", action="store_true", help="list what would be rewritten; write nothing")

    stats = command("stats", cmd_stats, "recordings, size, tokens and cost when recorded, by model")
    stats.add_argument("--json", action="store_true", help="machine-readable output")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        # argparse exits for --help, --version and usage errors; main() reports a status instead.
        return exc.code if isinstance(exc.code, int) else 0 if exc.code is None else 2
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    handler: Handler = args.handler
    try:
        return handler(args, Project(args.dir))
    except CliError as exc:
        sys.stdout.flush()
        print(f"promptcache: {exc}", file=sys.stderr)
        return exc.code
    except BrokenPipeError:
        # The reader (head, less) went away: not an error worth a traceback.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    except KeyboardInterrupt:
        return 130
