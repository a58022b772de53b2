"""The repository's own cassettes (the demo's) are valid, self-consistent and free of secrets."""

from __future__ import annotations

import re
from pathlib import Path

from pytest_promptcache.keys import key_of
from pytest_promptcache.settings import DEFAULT_SECRET_PATTERNS
from pytest_promptcache.store.files import read_recording

CASSETTES = Path(__file__).parent.parent / "cassettes"


def test_every_committed_recording_is_valid_and_keyed_by_its_request() -> None:
    files = sorted(CASSETTES.iterdir())
    assert files, "the demo's recordings are missing from cassettes/"
    for path in files:
        assert path.suffix == ".json", path
        recording = read_recording(path)
        assert key_of(recording.request) == recording.key == path.stem


def test_no_secret_shapes_or_cookies_in_committed_recordings() -> None:
    patterns = [re.compile(p) for p in DEFAULT_SECRET_PATTERNS]
    for path in CASSETTES.iterdir():
        text = path.read_text()
        for pattern in patterns:
            assert not pattern.search(text), (path, pattern.pattern)
        for needle in ("set-cookie", "session=", "authorization", "x-api-key"):
            assert needle not in text.lower(), (path, needle)
