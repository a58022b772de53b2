"""vcrpy's cassettes, served through the engine: the core of the vcr compatibility layer, free of pytest.

- ``convert``: between vcrpy's shapes (its ``Request``, its response dicts) and ours (``RawRequest``,
  ``RecordedResponse``).
- ``player``: one test's cassette, matched and played as vcr plays it (method and URI by default, each
  interaction once, in recorded order): the ``Player`` of the test's ordered scope (``ordered.py``).
- ``opening``: a cassette opened the way pytest-recording opens it (its ``VCR`` object, which the
  suite's ``pytest_recording_configure`` hook may configure, its paths, its merged configuration).
- ``importer``: cassettes converted to recordings (``promptcache import vcr``).

vcrpy itself reads the cassettes (its serializers, or the one a suite registers), filters and matches
requests: the layer reproduces what vcr would serve by asking vcr. It is imported only when a test is
marked ``@pytest.mark.vcr`` or the import command runs, never at start-up (vcrpy imports every HTTP
library it can patch).
"""

from __future__ import annotations

from ..settings import Mode

INSTALL_HINT = "pip install 'pytest-promptcache[vcr]'"

RECORD_MODES = ("once", "new_episodes", "none", "all", "rewrite")
# How pytest-recording's record modes map onto ours: "none" never goes live; "once" and "new_episodes"
# record what is missing; "all" and "rewrite" record everything again.
MODES = {
    "none": Mode.REPLAY,
    "once": Mode.RECORD,
    "new_episodes": Mode.RECORD,
    "all": Mode.REWRITE,
    "rewrite": Mode.REWRITE,
}


def mode_for_test(session: Mode, record_mode: object) -> Mode:
    """A test's mode when its ``vcr_config`` or marker names a record mode: it refines a recording
    session (``none`` keeps the test offline, ``all`` records it again) and never makes a replay go
    live, so CI stays offline whatever a cassette's configuration says."""
    wanted = MODES.get(str(record_mode))
    if wanted is None or session in (Mode.REPLAY, Mode.OFF):
        return session
    if wanted is Mode.REPLAY:
        return Mode.REPLAY
    return Mode.REWRITE if Mode.REWRITE in (session, wanted) else Mode.RECORD


def default_cassette_name(test_class: str | None, test_name: str) -> str:
    """pytest-recording's name: ``Class.test`` or ``test``, characters a file name cannot hold as ``-``."""
    name = f"{test_class}.{test_name}" if test_class else test_name
    for ch in r"<>?%*:|\"'/\\":
        name = name.replace(ch, "-")
    return name
