"""Coordination across machines through Redis: single flight per key, pacing per host, the run's spend.

- A key's lock is ``SET <prefix>:lock:<key> <token> NX PX 30000``: the token names the machine and pid,
  only its owner releases it (a compare-and-delete script), and the owner renews it while its call is in
  flight (``redislink``), so a long stream keeps it and a dead process's lock frees itself.
- Pacing is the schedule the state directory keeps for one machine, kept in Redis for the fleet: one
  script reserves the next start time per host atomically, on Redis's clock (the machines' clocks never
  need to agree). It is a token bucket of depth one (the generic cell rate algorithm): requests per
  minute space the starts, a finished call's tokens under a TPM limit push the schedule back.
- The spend of a run (``promptcache_run_id``) is one ``INCRBYFLOAT`` counter every machine of the run
  adds to and reads, so a budget holds for the run, not per machine.

Whatever Redis cannot do (down at start, lost mid-run), the machine's own state directory does: every
method falls back to ``SharedState``, so the session goes on as a single machine would.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import threading
from typing import Any

from ..redislink import RedisLink, SharedDown
from .state import MAX_INTERVAL, MAX_SPEND_USD, FileLock, SharedState, Slot

# A run's spend is kept this long after its last live call: long enough for any CI run's retries.
RUN_TTL_SECONDS = 7 * 24 * 3600
_HOLDER = 200

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

# ARGV: interval, max_wait, horizon. A stored time further ahead than the horizon is damage: ignored.
_RESERVE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local next_at = tonumber(redis.call('GET', KEYS[1]) or '') or 0
if next_at ~= next_at or next_at - now > tonumber(ARGV[3]) then next_at = 0 end
local slot = math.max(now, next_at)
local wait = slot - now
if wait > tonumber(ARGV[2]) then return {0, string.format('%.6f', wait)} end
local ttl = math.ceil((wait + tonumber(ARGV[1]) + 1) * 1000)
redis.call('SET', KEYS[1], string.format('%.6f', slot + tonumber(ARGV[1])), 'PX', ttl)
return {1, string.format('%.6f', wait)}
"""

# ARGV: seconds of debt, max_wait, horizon.
_DEBT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local next_at = tonumber(redis.call('GET', KEYS[1]) or '') or 0
if next_at ~= next_at or next_at - now > tonumber(ARGV[3]) then next_at = 0 end
local start = math.max(now, next_at)
local until_at = math.max(start, math.min(start + tonumber(ARGV[1]), now + tonumber(ARGV[2])))
redis.call('SET', KEYS[1], string.format('%.6f', until_at), 'PX', math.ceil((until_at - now + 1) * 1000))
return 1
"""


class RedisKeyLock:
    """A key's lock across the fleet; the machine's file lock once Redis is gone."""

    def __init__(self, link: RedisLink, key: str, fallback: FileLock) -> None:
        self._link = link
        self._name = link.key("lock", key)
        self._fallback = fallback
        self._token: str | None = None
        self._local = False

    def try_acquire(self) -> bool:
        if self._token is not None or self._local:
            raise RuntimeError(f"{self._name} is already held by this lock object")
        token = self._link.new_token()
        try:
            taken = self._link.call(
                "taking a key's lock",
                lambda c: c.set(self._name, token.encode(), nx=True, px=self._link.lock_ttl_ms),
            )
        except SharedDown:
            self._local = self._fallback.try_acquire()
            return self._local
        if not taken:
            return False
        self._token = token
        self._link.keep_alive(self._name, token)
        return True

    def release(self) -> None:
        if self._local:
            self._local = False
            self._fallback.release()
            return
        token, self._token = self._token, None
        if token is None:
            return
        self._link.let_go(self._name)
        # If Redis is gone, the lock expires by itself.
        with contextlib.suppress(SharedDown):
            self._link.run_script("releasing a key's lock", _RELEASE, [self._name], [token])

    def describe_holder(self) -> str:
        if not self._link.up:
            return self._fallback.describe_holder()
        try:
            raw = self._link.call("reading a lock's holder", lambda c: c.getrange(self._name, 0, _HOLDER))
        except SharedDown:
            return "another process (the shared tier went away)"
        text = raw.decode("ascii", "replace") if isinstance(raw, bytes) else ""
        machine, _, rest = text.partition(" ")
        pid = rest.partition(" ")[0]
        if machine.isprintable() and machine and pid.isdigit():
            return f"pid {pid} on machine {machine[:128]}"
        return "another process (its name in the lock is unreadable)"


class FleetState:
    """``backend.Coordination`` through Redis, with the machine's ``SharedState`` behind it."""

    def __init__(self, local: SharedState, link: RedisLink) -> None:
        self.local = local
        self.link = link
        self._lock = threading.Lock()
        run_id = link.config.run_id
        self._spend_key = link.key("run", run_id, "spend") if run_id else None
        self._bad_spend_reported = False

    def key_lock(self, key: str) -> RedisKeyLock:
        return RedisKeyLock(self.link, key, self.local.key_lock(key))

    # Rewrite pays for each request once per session: what this machine rewrote, it knows.
    def mark_rewritten(self, key: str) -> None:
        self.local.mark_rewritten(key)

    def was_rewritten(self, key: str) -> bool:
        return self.local.was_rewritten(key)

    # -- the run's spend ---------------------------------------------------------------------------------

    def add_spend(self, usd: float) -> float:
        # Counted locally too: if Redis goes away, the session's own spend still holds the budget.
        local = self.local.add_spend(usd)
        key = self._spend_key
        if key is None or not self.link.up:
            return local

        def add(client: Any) -> Any:
            pipe = client.pipeline(transaction=True)
            pipe.incrbyfloat(key, usd)
            pipe.expire(key, RUN_TTL_SECONDS)
            return pipe.execute()[0]

        try:
            total = self.link.call("adding to the run's spend", add)
        except SharedDown:
            return local
        return max(self._amount(total), local)

    def spent(self) -> float:
        local = self.local.spent()
        key = self._spend_key
        if key is None or not self.link.up:
            return local
        try:
            raw = self.link.call("reading the run's spend", lambda c: c.getrange(key, 0, 64))
        except SharedDown:
            return local
        return max(self._amount(raw), local)

    def _amount(self, raw: object) -> float:
        try:
            value = float(raw.decode("ascii") if isinstance(raw, bytes) else raw)  # type: ignore[arg-type]
        except (TypeError, ValueError, UnicodeDecodeError):
            value = math.nan
        if raw in (b"", None):
            return 0.0
        if not (math.isfinite(value) and 0.0 <= value <= MAX_SPEND_USD):
            if not self._bad_spend_reported:
                self._bad_spend_reported = True
                self.link.notice(
                    f"promptcache: ignored the run's spend in {self._spend_key}: {str(raw)[:40]} is not an "
                    f"amount from 0 to {MAX_SPEND_USD:g} dollars; counting this session's spend alone"
                )
            return 0.0
        return value

    # -- pacing ------------------------------------------------------------------------------------------

    def _pace_key(self, host: str) -> str:
        return self.link.key("pace", hashlib.sha256(host.encode()).hexdigest()[:16])

    def reserve_slot(self, host: str, interval: float, max_wait: float) -> Slot:
        if not self.link.up:
            return self.local.reserve_slot(host, interval, max_wait)
        args = [repr(interval), repr(max_wait), repr(max_wait + MAX_INTERVAL + 60.0)]
        try:
            reserved, wait = self.link.run_script(
                "reserving a pacing slot", _RESERVE, [self._pace_key(host)], args
            )
        except SharedDown:
            return self.local.reserve_slot(host, interval, max_wait)
        return Slot(max(float(wait), 0.0), reserved=bool(reserved))

    def add_debt(self, host: str, seconds: float, max_wait: float) -> None:
        if not self.link.up:
            self.local.add_debt(host, seconds, max_wait)
            return
        args = [repr(seconds), repr(max_wait), repr(max_wait + MAX_INTERVAL + 60.0)]
        try:
            self.link.run_script("pushing back a pacing schedule", _DEBT, [self._pace_key(host)], args)
        except SharedDown:
            self.local.add_debt(host, seconds, max_wait)
