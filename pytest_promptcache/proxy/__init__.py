"""``promptcache serve`` and the ``promptcache_proxy`` fixture: a recording proxy on 127.0.0.1 for LLM
calls this process cannot intercept (subprocesses, other languages, clients with their own sockets),
served by the same engine from the same recordings.

``upstreams`` (light: the plugin validates its ini option at start-up), ``server`` (the listener),
``handler`` (one client connection), ``forward`` (the request sent upstream). Nothing is imported here,
so validating upstreams imports neither the engine nor pydantic."""
