"""What the plugin keeps on pytest's config and items between hooks."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from ..marker import TestOptions
from ..session import CacheSession

if TYPE_CHECKING:
    # Types only: the ledger and the report import pydantic, which start-up must not pay for.
    from ..ledger import CallRecord
    from ..proxy.upstreams import Upstream
    from ..report.compare import Baseline
    from ..report.model import Report
    from .scope import PruneResult, RunScope

SESSION_KEY = pytest.StashKey[CacheSession]()
OPTIONS_KEY = pytest.StashKey[TestOptions]()
REPORT_KEY: pytest.StashKey[Report] = pytest.StashKey()
SCOPE_KEY: pytest.StashKey[RunScope] = pytest.StashKey()
PRUNE_KEY: pytest.StashKey[PruneResult] = pytest.StashKey()
WORKER_CALLS_KEY: pytest.StashKey[list[CallRecord]] = pytest.StashKey()
# The shared tier's notices (Redis gone, an entry ignored) that xdist workers handed over.
WORKER_NOTICES_KEY: pytest.StashKey[list[str]] = pytest.StashKey()
# Where the promptcache_proxy fixture may forward, checked at start-up.
UPSTREAMS_KEY: pytest.StashKey[dict[str, Upstream]] = pytest.StashKey()
# One line for each report that could not be written.
UNWRITTEN_KEY: pytest.StashKey[list[str]] = pytest.StashKey()
# --promptcache-compare's path as given and the report it names, read at configure.
BASELINE_KEY: pytest.StashKey[tuple[str, Baseline]] = pytest.StashKey()
# True when pytest-recording is active and owns the @pytest.mark.vcr tests.
RECORDING_KEY = pytest.StashKey[bool]()
WORKEROUTPUT_KEY = "promptcache_calls"
DESELECTED_KEY = "promptcache_deselected"
NOTICES_KEY = "promptcache_notices"
