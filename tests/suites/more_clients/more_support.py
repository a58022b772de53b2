"""What the suite's tests share besides fixtures: a prompt change that turns every call into a miss (the
outer test sets MORE_CLIENTS_CHANGE), after which every test swallows what its call raises: only the
plugin can then fail it."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

CHANGE = os.environ.get("MORE_CLIENTS_CHANGE", "")


def prompt(text: str) -> str:
    return text + CHANGE


@contextmanager
def calling() -> Iterator[None]:
    """The test's call and its checks; when the prompts are changed, the test itself never fails."""
    try:
        yield
    except Exception:
        if not CHANGE:
            raise
