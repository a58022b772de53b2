"""vcrpy cassettes converted to recordings (``promptcache import vcr``).

Each interaction becomes the recording a live call would have made of it: keyed by the project's rules,
its response decoded and cut into events, secrets scrubbed (a cassette may hold the credentials vcr was
never told to filter), priced at the time the cassette was last written.

One request, one answer is the session's rule, and cassettes break it: a test that polls gets several
answers to the same request, two tests may get two. A request whose every occurrence got the same
answer becomes one recording any test may use; one that got several becomes recordings scoped to their
cassette, one per occurrence in order, which a test marked ``@pytest.mark.vcr`` is served in order.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from vcr.serialize import deserialize
from vcr.serializers import jsonserializer, yamlserializer

from .. import __version__
from ..keys import Keyer, RawRequest, display_url, key_of
from ..live import scrubbed
from ..models import (
    CanonicalRequest,
    RecordedResponse,
    Recording,
    RecordingMeta,
    RequestScope,
    schema_version_for,
)
from ..safefile import UnsafeFile, read_regular_file
from ..scrub import Scrubber
from ..settings import Settings
from ..usage import PriceBook, measure
from .convert import ConversionError, from_vcr, recorded_response

SUFFIXES = (".yaml", ".yml", ".json")


@dataclass(frozen=True)
class Interaction:
    cassette: str  # the cassette's path relative to the rootdir: the scope its recordings may get
    index: int
    raw: RawRequest
    response: RecordedResponse
    written_at: datetime


@dataclass
class Plan:
    """What an import makes of the cassettes, before anything is written."""

    recordings: list[Recording] = field(default_factory=list)
    cassettes: int = 0
    interactions: int = 0
    # "path: what", "path #3: what": what could not be converted.
    problems: list[str] = field(default_factory=list)
    # host/path patterns for promptcache_endpoints: requests that are not LLM calls by default.
    endpoints: list[str] = field(default_factory=list)

    @property
    def scoped(self) -> int:
        return sum(1 for r in self.recordings if r.request.scope is not None)


def cassette_files(paths: Iterable[Path], recordings: Path | None = None) -> Iterator[Path]:
    """The files named, and the cassettes under the directories named (``SUFFIXES``), in order; not the
    recordings in ``recordings`` (pytest-recording's ``cassettes/<module>/`` may sit below it)."""
    for path in paths:
        if path.is_dir():
            for found in sorted(path.rglob("*")):
                ours = recordings is not None and found.parent.resolve() == recordings
                if found.suffix in SUFFIXES and found.is_file() and not ours:
                    yield found
        else:
            yield path


def default_serializer(path: Path) -> Any:
    return jsonserializer if path.suffix == ".json" else yamlserializer


def read_cassette(path: Path, serializer: Any, max_size: int) -> list[tuple[Any, Any]]:
    """The interactions of one cassette, as vcr reads them. Raises ValueError saying why it cannot."""
    try:
        text = read_regular_file(path, max_size=max_size, within=path.parent).decode("utf-8")
    except (OSError, UnsafeFile, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot be read: {exc}") from None
    try:
        found = deserialize(text, serializer)
    except Exception as exc:  # whatever the serializer raises: a user's own may raise anything
        raise ValueError(f"is not a cassette this serializer reads ({type(exc).__name__}: {exc})") from None
    return list(zip(found[0], found[1], strict=False))


class Importer:
    def __init__(self, settings: Settings, rootdir: Path, env: Mapping[str, str]) -> None:
        self.settings = settings
        self.rootdir = rootdir
        self.scrubber = Scrubber(
            secret_headers=settings.secret_headers,
            secret_params=settings.secret_params,
            patterns=settings.secret_patterns,
            env=env,
        )
        self.keyer = Keyer(settings, self.scrubber)
        self.prices = PriceBook(settings.prices)

    def plan(self, files: Iterable[Path], serializer: Any | None = None) -> Plan:
        plan = Plan()
        interactions = list(self._read(files, serializer, plan))
        # Every credential first: one learned from a later cassette is scrubbed from the earlier ones too.
        for item in interactions:
            self.scrubber.learn(item.raw.headers, item.raw.query)
        keyed: dict[str, list[tuple[Interaction, CanonicalRequest]]] = {}
        for item in interactions:
            key, canonical = self.keyer.key_for(item.raw)
            keyed.setdefault(key, []).append((item, canonical))
        endpoints: set[str] = set()
        for key, group in keyed.items():
            answers = {_answer(item.response) for item, _ in group}
            if len(answers) == 1:
                item, canonical = group[0]
                plan.recordings.append(self._recording(item, key, canonical))
            else:
                occurrences: dict[str, int] = {}
                for item, canonical in group:
                    index = occurrences[item.cassette] = occurrences.get(item.cassette, -1) + 1
                    # Scrubbed as the plugin scrubs a scope's name: a cassette named after a parametrize id.
                    scope = RequestScope(name=self.scrubber.text(item.cassette), index=index)
                    scoped = canonical.model_copy(update={"scope": scope})
                    plan.recordings.append(self._recording(item, key_of(scoped), scoped))
            raw = group[0][0].raw
            if not self.settings.is_llm_endpoint(raw.host.lower(), raw.path):
                endpoints.add(f"{raw.host.lower()}{raw.path}")
        plan.endpoints = sorted(endpoints)
        # A parser's message may quote the line it stopped at, credentials and all.
        plan.problems = [self.scrubber.text(problem) for problem in plan.problems]
        return plan

    def _read(self, files: Iterable[Path], serializer: Any | None, plan: Plan) -> Iterator[Interaction]:
        max_size = self.settings.limits.max_recording_size
        for path in files:
            label = Path(os.path.relpath(path.resolve(), self.rootdir)).as_posix()
            try:
                pairs = read_cassette(path, serializer or default_serializer(path), max_size)
                written_at = datetime.fromtimestamp(path.stat().st_mtime, UTC)
            except (ValueError, OSError) as exc:
                plan.problems.append(f"{label}: {exc}")
                continue
            plan.cassettes += 1
            for index, (request, response) in enumerate(pairs):
                plan.interactions += 1
                try:
                    yield Interaction(
                        label, index, from_vcr(request), recorded_response(response), written_at
                    )
                except ConversionError as exc:
                    plan.problems.append(f"{label} #{index + 1}: {exc}")

    def _recording(self, item: Interaction, key: str, canonical: CanonicalRequest) -> Recording:
        url = display_url(item.raw, self.scrubber)
        response = scrubbed(item.response, self.scrubber)
        price = measure(
            response,
            canonical.path,
            canonical.model,
            url,
            item.written_at,
            self.prices,
            body=canonical.body,
            method=canonical.method,
        )
        return Recording(
            schema_version=schema_version_for(response, canonical),
            key=key,
            request=canonical,
            response=response,
            meta=RecordingMeta(
                recorded_at=item.written_at,
                url=url,
                latency_ms=0.0,
                plugin_version=__version__,
                usage=price.usage,
                cost_usd=price.cost_usd,
                cache_saved_usd=price.cache_saved_usd,
                imported_from=self.scrubber.text(f"{item.cassette} #{item.index + 1}"),
            ),
        )


def _answer(response: RecordedResponse) -> str:
    """What tells two answers apart: everything but the headers (a date differs on every call)."""
    return response.model_dump_json(exclude={"headers"})
