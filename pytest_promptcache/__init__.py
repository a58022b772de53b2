"""pytest-promptcache: record LLM API calls once, replay them offline, and see what they cost."""

__version__ = "0.2.0"
