"""Record pacing: requests and tokens per minute per host, and retries of transient failures.

Only live calls that are being recorded are paced; replay never is. The schedule lives in the shared
state, so every process recording on the machine keeps to one limit.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

from ..limits import DEFAULT_RECORD_MAX_WAIT
from .backend import Coordination
from .state import Slot

MAX_RETRY_WAIT = 120.0


@dataclass(frozen=True)
class Pacing:
    state: Coordination
    rpm: int | None = None
    tpm: int | None = None
    retries: int = 0
    # Never hold a call longer than this: a queue that long fails the call (promptcache_record_max_wait).
    max_wait: float = DEFAULT_RECORD_MAX_WAIT

    def slot(self, host: str) -> Slot:
        """When to send, to hold the host's requests per minute; not reserved if later than max_wait."""
        if not self.rpm:
            return Slot(0.0)
        return self.state.reserve_slot(host, 60.0 / self.rpm, self.max_wait)

    def retry_delay(self, status: int, headers: Sequence[tuple[str, str]], attempt: int) -> float | None:
        """Seconds to wait before sending again after a 429 or 5xx, or None to hand it to the client."""
        if attempt >= self.retries or (status != 429 and status < 500):
            return None
        return retry_delay(headers, attempt)

    def charge(self, host: str, tokens: int) -> None:
        """Under a tokens-per-minute limit, a call's tokens delay the host's next request."""
        if self.tpm and tokens:
            self.state.add_debt(host, tokens * 60.0 / self.tpm, self.max_wait)


def retry_delay(headers: Sequence[tuple[str, str]], attempt: int) -> float:
    """Exponential backoff with full jitter, or what the provider's Retry-After asks for."""
    for name, value in headers:
        if name.lower() == "retry-after":
            try:
                seconds = float(value)
                if math.isfinite(seconds):  # "nan" parses, and would pass min/max to time.sleep
                    return min(max(seconds, 0.0), MAX_RETRY_WAIT)
                break
            except ValueError:
                try:
                    when = parsedate_to_datetime(value)
                except (TypeError, ValueError):
                    break
                return min(max((when - datetime.now(UTC)).total_seconds(), 0.0), MAX_RETRY_WAIT)
    return random.uniform(0, min(MAX_RETRY_WAIT, 2.0**attempt))
