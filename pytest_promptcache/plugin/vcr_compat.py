"""pytest-recording's surface, for suites written for it, when pytest-recording is not active
(uninstalled, or ``-p no:recording``): the ``vcr`` marker with its arguments, the ``vcr``,
``vcr_config``, ``vcr_cassette_dir``, ``default_cassette_name`` and ``record_mode`` fixtures, the
``pytest_recording_configure`` hook and ``--record-mode``. A marked test is served from its cassette
through the engine (``compat_vcr``).

When pytest-recording is active it owns all of that: marked tests are left to it (promptcache is off in
them, so what vcr records reaches the network), and the run says so once.

Registered as a plugin (its fixtures) only when the layer is on; nothing here imports vcrpy, which
a marked test's ``vcr`` fixture imports when it first runs.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from typing import Any

import pytest

from ..compat_vcr import INSTALL_HINT, MODES, RECORD_MODES, mode_for_test
from ..compat_vcr import default_cassette_name as cassette_name
from ..ordered import OrderedScope
from ..settings import Mode
from .stash import OPTIONS_KEY, SESSION_KEY

RECORDING = "recording"  # pytest-recording's plugin name
PYTEST_VCR = "vcr"  # pytest-vcr's, which defines the same fixtures
MARKERS = (
    "vcr: serve the test from its vcrpy cassette (pytest-recording's marker; pytest-promptcache serves it)",
    "default_cassette(name): the test's cassette name (pytest-recording's marker)",
    "block_network: pytest-recording's marker (not enforced by pytest-promptcache)",
    "allowed_hosts: pytest-recording's marker (not enforced by pytest-promptcache)",
)
LEFT_TO_RECORDING = (
    "promptcache: pytest-recording is active, so @pytest.mark.vcr tests are left to it (promptcache is off "
    "in them); run with -p no:recording to serve their cassettes through promptcache"
)


def recording_active(pluginmanager: pytest.PytestPluginManager) -> bool:
    """Whether pytest-recording is, or is about to be, registered in this run: options are added as
    each plugin registers, and it may come after this one."""
    if pluginmanager.has_plugin(RECORDING):
        return True
    if pluginmanager.is_blocked(RECORDING) or os.environ.get("PYTEST_DISABLE_PLUGIN_AUTOLOAD"):
        return False
    return importlib.util.find_spec("pytest_recording") is not None


def add_options(parser: pytest.Parser, pluginmanager: pytest.PytestPluginManager) -> None:
    if recording_active(pluginmanager):
        return
    group = parser.getgroup(
        "recording", "vcrpy cassettes (pytest-recording's options, served by promptcache)"
    )
    group.addoption(
        "--record-mode",
        dest="record_mode",
        default=None,
        choices=RECORD_MODES,
        help="pytest-recording's record mode, as a promptcache mode: none = replay, once and new_episodes "
        "= record, all and rewrite = rewrite. --promptcache wins over it.",
    )
    group.addoption(
        "--disable-recording",
        dest="disable_recording",
        action="store_true",
        default=False,
        help="don't serve @pytest.mark.vcr tests from their cassettes (recordings still answer them)",
    )


def cli_mode(config: pytest.Config) -> str | None:
    """The session mode ``--record-mode`` asks for (when ``--promptcache`` does not); when
    pytest-recording is active the option is its own, for its own tests."""
    if config.pluginmanager.has_plugin(RECORDING):
        return None
    record_mode = config.getoption("record_mode", None)
    return MODES[record_mode].value if record_mode else None


class RecordingHookSpecs:
    @pytest.hookspec
    def pytest_recording_configure(self, config: pytest.Config, vcr: Any) -> None:
        """Configure the ``VCR`` a marked test's cassette is opened with (register serializers,
        matchers, a persister), as pytest-recording calls it."""


def configure(config: pytest.Config, vcr_setting: str) -> bool:
    """Set the layer up for this run; True when pytest-recording owns the vcr tests instead."""
    manager = config.pluginmanager
    if manager.has_plugin(RECORDING):
        return True
    if manager.has_plugin(PYTEST_VCR):
        return False  # pytest-vcr defines these fixtures itself
    manager.add_hookspecs(RecordingHookSpecs)
    for line in MARKERS:
        config.addinivalue_line("markers", line)
    if vcr_setting != "off":
        manager.register(sys.modules[__name__], "promptcache-vcr")
    return False


def left_to_recording(item: pytest.Item) -> bool:
    return item.get_closest_marker("vcr") is not None


# -- the fixtures (registered by ``configure``) ------------------------------------------------------------


@pytest.fixture(scope="session")
def record_mode(request: pytest.FixtureRequest) -> str:
    """pytest-recording's record mode: ``--record-mode``, else ``none``."""
    return str(request.config.getoption("record_mode", None) or "none")


@pytest.fixture
def vcr_config() -> dict[str, Any]:
    """The arguments every marked test's cassette is opened with; a suite overrides it."""
    return {}


@pytest.fixture
def vcr_markers(request: pytest.FixtureRequest) -> list[pytest.Mark]:
    return list(request.node.iter_markers(name="vcr"))


@pytest.fixture(scope="module")
def vcr_cassette_dir(request: pytest.FixtureRequest) -> str:
    """``cassettes/<test module>`` beside the test module, as pytest-recording has it."""
    module = request.node.path
    return os.path.join(module.parent, "cassettes", module.stem)


@pytest.fixture
def default_cassette_name(request: pytest.FixtureRequest) -> str:
    marker = request.node.get_closest_marker("default_cassette")
    if marker is not None:
        if not marker.args:
            pytest.fail(
                "@pytest.mark.default_cassette needs the cassette's name: default_cassette('name')",
                pytrace=False,
            )
        return str(marker.args[0])
    return cassette_name(request.cls.__name__ if request.cls is not None else None, request.node.name)


@pytest.fixture(autouse=True)
def _promptcache_vcr(request: pytest.FixtureRequest) -> None:
    """Opens a marked test's cassette before its other fixtures run, as pytest-recording's autouse
    ``vcr`` does. Under a name of its own: a suite that uses vcrpy without pytest-recording may have a
    ``vcr`` fixture, which must not start running for every test."""
    if request.node.get_closest_marker("vcr") is not None:
        request.getfixturevalue("vcr")


@pytest.fixture
def vcr(
    request: pytest.FixtureRequest, vcr_markers: list[pytest.Mark], vcr_cassette_dir: str, record_mode: str
) -> Any:
    """A marked test's vcr cassette, served through promptcache; None for other tests, and for every
    test with ``--disable-recording`` (which then runs on recordings alone)."""
    if not vcr_markers or request.config.getoption("disable_recording", False):
        return None
    return _open(request, vcr_markers, vcr_cassette_dir, record_mode)


def _open(
    request: pytest.FixtureRequest, markers: list[pytest.Mark], cassette_dir: str, record_mode: str
) -> Any:
    config = request.config
    try:
        from ..compat_vcr.opening import CassetteError, merge_config, open_cassette
        from ..compat_vcr.player import VcrPlayer
    except ImportError as exc:
        if (exc.name or "").split(".")[0] not in ("vcr", "yaml", "wrapt"):
            raise
        pytest.fail(
            f"promptcache: @pytest.mark.vcr tests are read with vcrpy, not installed here: {INSTALL_HINT}",
            pytrace=False,
        )
    session = config.stash[SESSION_KEY]
    settings = session.settings
    merged = merge_config(request.getfixturevalue("vcr_config"), [m.kwargs for m in markers])
    read = settings.vcr == "cassettes"
    try:
        opened = open_cassette(
            name=request.getfixturevalue("default_cassette_name"),
            cassette_dir=cassette_dir,
            extra=[str(path) for marker in markers for path in marker.args],
            config=merged,
            record_mode=record_mode,
            configure=lambda vcr: config.hook.pytest_recording_configure(config=config, vcr=vcr),
            rootdir=config.rootpath,
            read=read,
            max_size=settings.limits.max_recording_size,
        )
    except CassetteError as exc:
        pytest.fail(f"promptcache: {exc}", pytrace=False)
    player = VcrPlayer(opened, play=read)
    context = session.context
    context.scope = OrderedScope(names=player.scope_names, player=player, drift=settings.vcr_drift)
    options = request.node.stash.get(OPTIONS_KEY, None)
    explicit = (options is not None and options.mode is not None) or config.getoption("record_mode", None)
    if not explicit and "record_mode" in merged and context.mode is not Mode.OFF:
        context.mode = mode_for_test(context.mode, merged["record_mode"])
    return opened.cassette
