"""``python -m pytest_promptcache``: the ``promptcache`` command, for environments without its script."""

from .cli import main

if __name__ == "__main__":
    raise SystemExit(main())
