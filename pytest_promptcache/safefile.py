"""Reading a file someone else may have put there: only a regular file, never more than a cap, never
blocking, never through a link that leads out of the directory it should be in.

Light on purpose (the standard library only): the state directory's readers use it at start-up too.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

# A FIFO opened without it blocks until a writer appears, which may be never.
_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)

_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


class UnsafeFile(Exception):
    """A file that must not be read as it is; ``reason`` says why as a clause ("it is a FIFO, ...")."""

    def __init__(self, path: Path, reason: str, *, too_large: bool = False) -> None:
        self.path = path
        self.reason = reason
        self.too_large = too_large
        super().__init__(f"{path}: {reason}")


def human_size(size: int) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size} B"


def _kind(mode: int) -> str:
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def read_regular_file(path: Path, *, max_size: int, within: Path | None = None) -> bytes:
    """The bytes of ``path``, at most ``max_size`` of them.

    A symbolic link is followed only when ``within`` is given and the link resolves to a file inside
    that directory. Raises FileNotFoundError when nothing is at ``path``, UnsafeFile when what is there
    must not be read (a FIFO, a device, a link out of ``within``, too large), OSError when it cannot be.
    """
    return read_regular_file_info(path, max_size=max_size, within=within)[0]


def read_regular_file_info(
    path: Path, *, max_size: int, within: Path | None = None
) -> tuple[bytes, os.stat_result | None]:
    """``read_regular_file``, and the status of the file opened, taken before reading it (None when
    ``path`` is a symbolic link: its own status says nothing of what it leads to)."""
    target = path
    mode = os.lstat(path).st_mode
    if stat.S_ISLNK(mode):
        if within is None:
            raise UnsafeFile(path, "it is a symbolic link")
        target = _link_target(path, within)
        mode = os.stat(target).st_mode
    if not stat.S_ISREG(mode):
        raise UnsafeFile(path, f"it is {_kind(mode)}, not a regular file")
    fd = os.open(target, _FLAGS | _NOFOLLOW)
    try:
        # Checked again on what was opened: the name may have been swapped since lstat.
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise UnsafeFile(path, f"it is {_kind(info.st_mode)}, not a regular file")
        if info.st_size > max_size:
            reason = f"it is {human_size(info.st_size)}, over the {human_size(max_size)} limit"
            raise UnsafeFile(path, reason, too_large=True)
        chunks: list[bytes] = []
        # One read of the size fstat reported, one more to see the end; a file that grows meanwhile is
        # still read no further than the cap.
        remaining = max_size + 1
        want = min(info.st_size + 1, remaining)
        while remaining > 0:
            chunk = os.read(fd, want)
            if not chunk:
                break
            chunks.append(chunk)
            remaining -= len(chunk)
            want = min(1 << 20, remaining)
    finally:
        os.close(fd)
    data = b"".join(chunks)
    if len(data) > max_size:
        reason = f"it grew past the {human_size(max_size)} limit while being read"
        raise UnsafeFile(path, reason, too_large=True)
    return data, (info if target is path else None)


def _link_target(path: Path, within: Path) -> Path:
    try:
        target = path.resolve(strict=True)
    except FileNotFoundError:
        raise UnsafeFile(
            path, f"it is a symbolic link to {os.readlink(path)}, which does not exist"
        ) from None
    except (OSError, RuntimeError) as exc:  # a loop of links
        raise UnsafeFile(path, f"it is a symbolic link that cannot be followed ({exc})") from None
    base = within.resolve()
    if not target.is_relative_to(base):
        raise UnsafeFile(path, f"it is a symbolic link to {target}, outside {base}")
    return target
