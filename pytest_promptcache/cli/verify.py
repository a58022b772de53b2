"""``promptcache verify``: every file of a recordings directory is a usable recording, and none holds a
secret, by the same secret headers, parameters and patterns the plugin scrubs with."""

from __future__ import annotations

import argparse
import json
import os
import re
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ..scrub import REDACTED, secret_env_values
from ..settings import SECRET_PATTERN_NAMES, Settings
from ..store.files import SUFFIX, TMP_SUFFIX, CorruptRecording, read_recording, read_recording_text
from ..words import plural
from .project import Project
from .render import display

# Files git needs in an otherwise committed directory; they hold no recording and leak nothing.
GIT_FILES = frozenset({".gitkeep", ".gitignore", ".gitattributes"})


@dataclass(frozen=True)
class Secrets:
    """What counts as a secret: names of headers and query parameters, key shapes, and the values of the
    environment's secret variables (each with the variable's name, to say where it came from)."""

    headers: frozenset[str]
    params: frozenset[str]
    patterns: tuple[tuple[re.Pattern[str], str], ...]
    env_values: Mapping[str, str]

    @classmethod
    def of(cls, settings: Settings, env: Mapping[str, str]) -> Secrets:
        return cls(
            headers=frozenset(settings.secret_headers),
            params=frozenset(settings.secret_params),
            # build_settings has compiled every pattern once already: none can fail here.
            patterns=tuple(
                (re.compile(p), SECRET_PATTERN_NAMES.get(p, f"the pattern {p!r}"))
                for p in settings.secret_patterns
            ),
            env_values={
                value: placeholder.removeprefix("<redacted:").removesuffix(">")
                for value, placeholder in secret_env_values(env).items()
            },
        )


@dataclass
class Findings:
    lines: list[str] = field(default_factory=list)

    def add(self, path: Path, message: str, line: int | None = None) -> None:
        where = display(path) + (f":{line}" if line is not None else "")
        self.lines.append(f"{where}: {message}")


def shown(secret: str) -> str:
    return secret[:6] + "…"


def scan_secrets(path: Path, text: str, secrets: Secrets, out: Findings) -> None:
    for number, line in enumerate(text.splitlines(), start=1):
        spans: list[tuple[int, int]] = []
        for value, name in secrets.env_values.items():
            # A value with quotes or backslashes appears escaped in JSON text.
            for form in dict.fromkeys((value, json.dumps(value, ensure_ascii=False)[1:-1])):
                start = line.find(form)
                if start >= 0:
                    spans.append((start, start + len(form)))
                    out.add(path, f"the value of ${name} ({shown(value)})", number)
                    break
        for pattern, label in secrets.patterns:
            for match in pattern.finditer(line):
                if any(s < match.end() and match.start() < e for s, e in spans):
                    continue  # already reported as an environment variable's value
                spans.append(match.span())
                out.add(path, f"what looks like {label} ({shown(match.group())})", number)


def check_recording(path: Path, text: str, secrets: Secrets, out: Findings, max_size: int) -> bool:
    """Schema, key and secret names of one recording file; True if it is a usable recording."""
    try:
        json.loads(text)
    except json.JSONDecodeError as exc:
        out.add(path, f"not valid JSON: {exc.msg} (column {exc.colno})", exc.lineno)
        return False
    except RecursionError:
        pass  # nested too deeply for the stdlib parser: read_recording names it
    try:
        recording = read_recording(path, max_size)
    except CorruptRecording as exc:
        out.add(path, f"unusable recording: {exc.reason}")
        return False
    # read_recording has checked that the request still hashes to the key.
    lines = text.splitlines()

    def line_of(needle: str) -> int | None:
        return next((i for i, line in enumerate(lines, start=1) if needle in line), None)

    for where, headers in (("request", recording.request.headers), ("response", recording.response.headers)):
        for name in headers:
            if name.lower() in secrets.headers:
                out.add(
                    path, f"{where} header {name!r} is stored; it carries secrets", line_of(json.dumps(name))
                )
    params = list(recording.request.query)
    params += urllib.parse.parse_qsl(urllib.parse.urlsplit(recording.meta.url).query, keep_blank_values=True)
    for name, value in params:
        if name.lower() in secrets.params and value != REDACTED:
            out.add(
                path,
                f"query parameter {name!r} is stored with a value; it carries secrets",
                line_of(f"{name}="),
            )
    return True


def cmd_verify(args: argparse.Namespace, project: Project) -> int:
    out = Findings()
    secrets = Secrets.of(project.settings, os.environ)
    max_size = project.settings.limits.max_recording_size
    if args.files:
        targets = [Path(f) for f in args.files]
        where = "the files given"
    else:
        directory = project.existing_directory()
        # Every file, not only those named like recordings: a stray file is a finding too.
        targets = sorted(Path(item.path) for item in os.scandir(directory))
        where = display(directory)
    recordings = 0
    for path in targets:
        name = path.name
        if not path.exists() and not path.is_symlink():
            out.add(path, "no such file")
            continue
        if path.is_dir():
            out.add(
                path, "a directory, not a recording: recordings are the .json files directly in the directory"
            )
            continue
        try:
            # Read as the plugin reads: regular files only, bounded, never blocking on a FIFO.
            text = read_recording_text(path, max_size)
        except FileNotFoundError:
            out.add(path, "no such file")
            continue
        except CorruptRecording as exc:
            out.add(path, f"unusable: {exc.reason}")
            continue
        if name.startswith(".") and name.endswith(TMP_SUFFIX):
            out.add(
                path,
                "a temp file left by an interrupted write; delete it (a pytest run that records also does)",
            )
        elif name.endswith(SUFFIX) and not name.startswith("."):
            recordings += check_recording(path, text, secrets, out, max_size)
        elif name not in GIT_FILES:
            out.add(path, "not a recording: only <key>.json files belong in the recordings directory")
        scan_secrets(path, text, secrets, out)
    for line in out.lines:
        print(line)
    checked = f"{plural(len(targets), 'file')} ({plural(recordings, 'recording')}) in {where}"
    if out.lines:
        print(f"promptcache verify: {plural(len(out.lines), 'problem')} in {checked}")
        return 1
    print(f"promptcache verify: {checked}: no problems")
    return 0
