"""Where the processes of one machine coordinate, kept private.

The default directory lies in the shared temp directory, where another user could create it first and
plant a schedule that stalls every run or locks that block it. So it is created private (0700), and one
that another user owns or could write to is refused, at start-up and again when it is first used.

Light (the standard library only): the plugin checks the directory at start-up.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import stat
import tempfile
from pathlib import Path


class UnsafeStateDir(Exception):
    """A state directory another user could control; the message names it and says what to do."""

    def __init__(self, path: Path, what: str) -> None:
        self.path = path
        super().__init__(
            f"state directory {path} {what}, so another user could plant locks and pacing state in it; "
            "remove it, or set promptcache_state_dir to a directory of your own"
        )


def state_dirs(cassette_dir: Path, configured: Path | None) -> tuple[Path, Path]:
    """The outermost directory that must be private, and the state root below it (or the same)."""
    if configured is not None:
        return configured, configured
    digest = hashlib.sha256(str(cassette_dir).encode()).hexdigest()[:16]
    uid = os.getuid() if hasattr(os, "getuid") else 0
    top = Path(tempfile.gettempdir()) / f"pytest-promptcache-{uid}"
    return top, top / digest


def _levels(top: Path, root: Path) -> list[Path]:
    levels = [top]
    for part in root.relative_to(top).parts:
        levels.append(levels[-1] / part)
    return levels


def _check_private(path: Path) -> None:
    """Raises FileNotFoundError if nothing is there, UnsafeStateDir if it is not this user's alone."""
    info = os.lstat(path)
    if stat.S_ISLNK(info.st_mode):
        raise UnsafeStateDir(path, "is a symbolic link")
    if not stat.S_ISDIR(info.st_mode):
        raise UnsafeStateDir(path, "is not a directory")
    me = os.geteuid() if hasattr(os, "geteuid") else None
    if me is not None and info.st_uid != me:
        raise UnsafeStateDir(path, f"belongs to uid {info.st_uid}, not to you (uid {me})")
    if me is not None and info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise UnsafeStateDir(path, f"is writable by others (mode {stat.S_IMODE(info.st_mode):04o})")


def check_state_dirs(top: Path, root: Path) -> None:
    """At start-up: the levels that exist already must be private. Creates nothing."""
    for level in _levels(top, root):
        try:
            _check_private(level)
        except FileNotFoundError:
            return


def make_private_dirs(path: Path) -> None:
    """Create ``path`` and every missing directory above it, each 0700. (``Path.mkdir(mode=0o700,
    parents=True)`` gives the parents it creates the umask's mode: a cache written before the session's
    state directory existed left its top level 0755, readable by every user.) Raises OSError."""
    missing: list[Path] = []
    level = path
    while not os.path.lexists(level) and level.parent != level:
        missing.append(level)
        level = level.parent
    for level in reversed(missing):
        with contextlib.suppress(FileExistsError):
            os.mkdir(level, 0o700)


def make_state_dirs(top: Path, root: Path) -> None:
    """Create the levels that are missing, private, and check every level, found or made."""
    top.parent.mkdir(parents=True, exist_ok=True)
    for level in _levels(top, root):
        with contextlib.suppress(FileExistsError):
            os.mkdir(level, 0o700)
        _check_private(level)
