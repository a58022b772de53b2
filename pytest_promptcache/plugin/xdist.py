"""Runs split over xdist workers: each worker hands its calls to the controller, which reports once."""

from __future__ import annotations

from typing import Any

import pytest

from .stash import (
    DESELECTED_KEY,
    NOTICES_KEY,
    SCOPE_KEY,
    WORKER_CALLS_KEY,
    WORKER_NOTICES_KEY,
    WORKEROUTPUT_KEY,
)


class XdistMerge:
    """On the xdist controller: collect each worker's calls as it finishes."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config

    def pytest_testnodedown(self, node: Any, error: object) -> None:
        payload = getattr(node, "workeroutput", {}).get(WORKEROUTPUT_KEY)
        if payload:
            from pydantic import TypeAdapter

            from ..ledger import CallRecord

            calls = TypeAdapter(list[CallRecord]).validate_json(payload)
            self.config.stash[WORKER_CALLS_KEY].extend(calls)
        notices = getattr(node, "workeroutput", {}).get(NOTICES_KEY, [])
        self.config.stash[WORKER_NOTICES_KEY].extend(str(n) for n in notices)
        deselected = getattr(node, "workeroutput", {}).get(DESELECTED_KEY, 0)
        # Every worker collects and deselects the same items: one worker's count is the run's.
        scope = self.config.stash[SCOPE_KEY]
        scope.deselected = max(scope.deselected, int(deselected))
