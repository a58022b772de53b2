"""Where recordings live: JSON files, one per key, behind an in-memory tier."""
