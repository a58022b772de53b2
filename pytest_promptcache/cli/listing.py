"""``promptcache ls``, ``show`` and ``diff``: reading the recordings, never changing them."""

from __future__ import annotations

import argparse
import difflib
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from ..miss import pretty_request
from ..models import Recording
from ..prices import money, usd
from ..store.files import CorruptRecording, read_recording
from ..words import plural
from .project import CliError, Project
from .recordings import RecordingInfo, load, load_all, print_unreadable, resolve_key, unreadable_json
from .render import (
    assembled_text,
    body_lines,
    display,
    print_table,
    request_body_lines,
    response_lines,
    tokens_text,
    when,
)


def cmd_ls(args: argparse.Namespace, project: Project) -> int:
    directory = project.existing_directory()
    infos, errors = load_all(directory, project.prices, project.settings.limits.max_recording_size)
    total = len(infos)
    cutoff = datetime.now(UTC) - args.older_than if args.older_than is not None else None

    def keep(info: RecordingInfo) -> bool:
        request, meta = info.recording.request, info.recording.meta
        endpoint = f"{request.endpoint} {request.method} {request.path} {meta.url}".lower()
        return (
            (args.model is None or args.model.lower() in (info.model or "").lower())
            and (args.test is None or args.test.lower() in (meta.test or "").lower())
            and (args.endpoint is None or args.endpoint.lower() in endpoint)
            and (cutoff is None or info.recorded_at < cutoff)
        )

    infos = [info for info in infos if keep(info)]
    if args.json:
        out = {
            "directory": str(directory),
            "recordings": [info.as_json() for info in infos],
            "errors": unreadable_json(errors),
        }
        print(json.dumps(out, indent=2, ensure_ascii=False))
        return 1 if errors else 0
    if not infos:
        print(f"no recordings in {display(directory)}" + (f" match (of {total})" if total else ""))
    else:
        header = ("key", "endpoint", "host", "model", "recorded_at (UTC)", "tokens in/out", "cost", "test")
        rows = [
            (
                info.key[:12],
                f"{info.recording.request.method} {info.recording.request.path}",
                info.recording.request.host,
                info.model or "-",
                when(info.recorded_at),
                info.tokens_cell(),
                info.cost_cell(),
                info.recording.meta.test or "-",
            )
            for info in infos
        ]
        print_table(header, rows, right={5, 6}, money=6)
        print()
        print(summary_line(infos, total, directory))
    print_unreadable(errors)
    return 1 if errors else 0


def summary_line(infos: Sequence[RecordingInfo], total: int, directory: Path) -> str:
    shown = (
        f"{len(infos)} of {plural(total, 'recording')}" if len(infos) != total else plural(total, "recording")
    )
    tokens_in = sum(info.usage.input_tokens for info in infos if info.usage)
    tokens_out = sum(info.usage.output_tokens for info in infos if info.usage)
    # Summed as decimals: a thousand costs of a millionth of a dollar must add up to what they print.
    cost = sum((Decimal(str(info.cost_usd)) for info in infos if info.cost_usd is not None), Decimal(0))
    unpriced = sum(1 for info in infos if info.usage is not None and info.cost_usd is None)
    line = (
        f"{shown} in {display(directory)}: {tokens_in:,} tokens in, {tokens_out:,} out, "
        f"{usd(money(cost))} when recorded"
    )
    return line + (f" ({unpriced} unpriced)" if unpriced else "")


def cmd_show(args: argparse.Namespace, project: Project) -> int:
    directory = project.existing_directory()
    path = resolve_key(directory, args.key)
    try:
        info = load(path, project.prices, project.settings.limits.max_recording_size)
    except CorruptRecording as exc:
        raise CliError(str(exc), code=1) from None
    recording = info.recording
    request, response, meta = recording.request, recording.response, recording.meta
    fields = [
        ("key", recording.key),
        ("file", display(path)),
        ("test", meta.test or "-"),
        ("recorded_at", f"{when(info.recorded_at)} UTC"),
        ("model", info.model or "-"),
        ("tokens", "-" if info.usage is None else tokens_text(info.usage)),
        ("cost", info.cost_cell() + (" at recorded_at prices" if info.priced else "")),
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
