"""What the engine needs from coordination, whoever provides it: the processes of one machine (OS file
locks and files in the state directory, ``state.SharedState``) or a fleet of machines (Redis,
``fleet.FleetState``, which falls back to the former when Redis goes away).
"""

from __future__ import annotations

from typing import Protocol

from .state import Slot


class KeyLock(Protocol):
    """An exclusive, non-blocking lock on one recording key."""

    def try_acquire(self) -> bool: ...

    def release(self) -> None: ...

    def describe_holder(self) -> str:
        """Who holds it, as someone looking for the stuck call needs to know."""
        ...


class Coordination(Protocol):
    def key_lock(self, key: str) -> KeyLock: ...

    def mark_rewritten(self, key: str) -> None: ...

    def was_rewritten(self, key: str) -> bool: ...

    def add_spend(self, usd: float) -> float:
        """Add a live call's cost to the session's (or run's) spend; the new total."""
        ...

    def spent(self) -> float: ...

    def reserve_slot(self, host: str, interval: float, max_wait: float) -> Slot:
        """The next start time for a request to ``host``, unless more than ``max_wait`` away."""
        ...

    def add_debt(self, host: str, seconds: float, max_wait: float) -> None:
        """Push the host's schedule back (a finished call's tokens under a TPM limit)."""
        ...
