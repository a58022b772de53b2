"""The engine's link to the fleet: with ``promptcache_shared`` set and Redis reachable, recordings and
coordination go through Redis; otherwise (not configured, or unreachable at start) this machine's own
state directory coordinates, exactly as without the option.
"""

from __future__ import annotations

from .coordination.backend import Coordination
from .coordination.fleet import FleetState
from .coordination.state import SharedState
from .redislink import RedisLink
from .settings import Settings
from .store.redis import SharedRecordings


def connect(
    settings: Settings, local: SharedState
) -> tuple[RedisLink | None, SharedRecordings | None, Coordination]:
    """The link (None: no shared tier configured), the shared recordings (None: none to use), and
    what coordinates this session's processes. Waits on Redis for at most its timeout."""
    if settings.shared is None:
        return None, None, local
    link = RedisLink(settings.shared)
    if not link.start():
        return link, None, local
    return link, SharedRecordings(link, settings.limits.max_recording_size), FleetState(local, link)
