"""The served-form cache: what serving each recording needs, kept between sessions.

A test process serves most recordings once, and that first serve is what costs: the file read, parsed,
checked and its key verified (about four warm serves). This cache keeps, per recording, its plain served
form (``served.Kept``: status, headers, body chunks, when and by which test it was recorded, its price)
from an earlier session that priced recordings as this one does (a recording that carries no price is
priced by counting its tokens: once, not in every session). A recording is served from it after one
``lstat`` shows its file is the one that was read then: same device, inode, size, modification and
change times (the change time cannot be set back by ``touch`` or ``utime``). A file of the same size
that is not (a fresh checkout in CI, a copy) is read, and served from the cache if its bytes have the
digest kept with the entry: hashing costs a fraction of parsing and checking. Anything else reads the
file as before, and the entry is replaced.

Kept only for what was read as a regular file (not through a symbolic link: its own status says nothing
of its target), checked in the written form or by the models, whose times are more than 2 s older than
the read: a change within the same clock tick could leave them equal (git's racy-clean check).

It also keeps which recordings each test served when it last ran. Before the first test, what the
selected tests served is checked and put in the memory tier (``preload``), bounded by its size: each
first serve then costs what a repeat costs, and an async client's needs no worker thread.

Where: ``served/<sha256 of the cassette directory's path>.pack`` in the state directory, a directory
private to the user (or nothing is read or written); the file's format is ``served_pack``'s.

Written at the session's end when the session read recordings it did not have, or a test served other
ones than it did last time (``save``): merged under a lock with what other processes (xdist workers)
wrote meanwhile, dropping entries whose file is gone, written whole and renamed into place. Bounded
(``served_pack``): ``MAX_ENTRIES`` entries, ``MAX_PACK_BYTES`` in all, entries over ``MAX_ENTRY_BYTES``
not kept; the served keys of the latest ``MAX_TESTS`` tests, ``MAX_TEST_KEYS`` each.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path

from ..coordination.state import FileLock
from ..safefile import UnsafeFile, read_regular_file_info
from .files import SUFFIX
from .packed import private_dir
from .served import CARRIED_PRICES, Kept
from .served_pack import (
    MAX_ENTRIES,
    Pack,
    TestKeys,
    content_digest,
    encode_entry,
    open_pack,
    signature,
    write_pack,
)

RACY_NS = 2_000_000_000
_KEY_LENGTH = 64  # a SHA-256 in hex
_KEY = re.compile(r"[0-9a-f]{64}")
SAVE_WAIT_SECONDS = 10.0
# The tests whose served keys are kept (the latest to run), and keys kept per test.
MAX_TESTS = 100_000
MAX_TEST_KEYS = 10_000


def pack_path(state_root: Path, directory: Path) -> Path:
    return state_root / "served" / f"{hashlib.sha256(str(directory).encode()).hexdigest()}.pack"


def nodeid_digest(nodeid: str) -> bytes:
    """What the file knows a test by: its node id may hold a secret (a parametrized value)."""
    return content_digest(nodeid.encode("utf-8", "surrogatepass"))


class ServedCache:
    """One cassette directory's served forms: those saved by earlier sessions (mapped, decoded one at a
    time when asked for) and those this session read (encoded, written by ``save``)."""

    def __init__(
        self, path: Path, directory: Path, *, prices: str = CARRIED_PRICES, racy_ns: int = RACY_NS
    ) -> None:
        """``prices``: what the session prices recordings under (``usage.PriceBook.identity``): a file
        written under other prices is not used. ``racy_ns``: how much older than the read a file's times
        must be for it to be kept."""
        self.path = path
        self.directory = directory
        self.prices = prices
        self.racy_ns = racy_ns
        self.hits = 0
        # Of those, served after their file's bytes were read and found unchanged (a new inode).
        self.by_content = 0
        self.preloaded = 0
        self._lock = threading.Lock()
        self._loaded = False
        self._pack: Pack | None = None
        self._new: dict[str, bytes] = {}
        # The key memory (``keys.Keyer.recall``): fingerprint → key and model, as "<key><model>".
        self._new_keys: dict[bytes, str] = {}

    def recall_key(self, fingerprint: bytes, *, load: bool) -> tuple[str, str | None] | None:
        """The key and model an earlier session gave a request with this fingerprint. ``load=False``
        (on an event loop): None unless the file is already read."""
        if not self._loaded:
            if not load:
                return None
            self._load()
        pack = self._pack
        kept = pack.keys.get(fingerprint) if pack is not None else None
        if type(kept) is not str or len(kept) < _KEY_LENGTH:
            return None
        return kept[:_KEY_LENGTH], kept[_KEY_LENGTH:] or None

    def remember_key(self, fingerprint: bytes, key: str, model: str | None) -> None:
        if len(key) != _KEY_LENGTH:
            return
        with self._lock:
            if len(self._new_keys) < MAX_ENTRIES:
                self._new_keys[fingerprint] = key + (model or "")

    def get(self, key: str, path: str, max_size: int) -> Kept | None:
        """The kept form of ``key``'s recording if its file is still the one it was taken from. Raises
        FileNotFoundError when the file is gone."""
        if not self._loaded:
            self._load()
        kept = self._checked(key, path, max_size)
        if kept is not None:
            self.hits += 1
        return kept

    def _checked(self, key: str, path: str, max_size: int) -> Kept | None:
        pack = self._pack
        entry = pack.entry(key) if pack is not None else None
        if entry is None:
            return None
        kept, sig, digest = entry
        info = os.lstat(path)
        if not stat.S_ISREG(info.st_mode) or info.st_size > max_size or info.st_size != sig[2]:
            return None
        if signature(info) == sig:
            return kept
        try:
            data, opened = read_regular_file_info(Path(path), max_size=max_size)
        except (UnsafeFile, OSError):
            return None
        if opened is None or content_digest(data) != digest:
            return None
        self.by_content += 1
        self._keep(key, kept, opened, digest)  # the next session's lstat finds it as it is now
        return kept

    def add(self, key: str, kept: Kept, info: os.stat_result | None, text: str) -> None:
        """Keep what was just read, ``text``, from the file whose status (taken before reading it) is
        ``info``."""
        if info is None or not stat.S_ISREG(info.st_mode):
            return
        self._keep(key, kept, info, None, text)

    def _keep(self, key: str, kept: Kept, info: os.stat_result, digest: bytes | None, text: str = "") -> None:
        if time.time_ns() - max(info.st_mtime_ns, info.st_ctime_ns) <= self.racy_ns:
            return
        if digest is None:
            digest = content_digest(text.encode("utf-8", "surrogatepass"))
        blob = encode_entry(kept, info, digest)
        if blob is None:  # a value marshal cannot write, or too large: the file serves it
            return
        with self._lock:
            if len(self._new) < MAX_ENTRIES:
                self._new[key] = blob

    def preload(
        self, tests: Iterable[str], limit: int, path_of: Callable[[str], str], max_size: int
    ) -> Iterator[tuple[str, Kept]]:
        """The kept forms of the recordings ``tests`` served when they last ran whose files are still
        the ones they were taken from: at most ``limit`` keys looked at, in the tests' order."""
        self._load()
        pack = self._pack
        if pack is None or not pack.tests:
            return  # not a digest computed for each of a large suite's tests
        seen: set[str] = set()
        for test in tests:
            keys = pack.tests.get(nodeid_digest(test))
            for key in keys if type(keys) is tuple else ():
                if type(key) is not str or key in seen or not _KEY.fullmatch(key):
                    continue
                if len(seen) >= limit:
                    return
                seen.add(key)
                try:
                    kept = self._checked(key, path_of(key), max_size)
                except OSError:
                    continue  # gone: its test misses, as it would have
                if kept is not None:
                    self.preloaded += 1
                    yield key, kept

    def save(self, served: Mapping[str, Sequence[str]] | None = None) -> None:
        """Write what this session read and the file did not hold, and the keys each test (a node id)
        was ``served`` where they changed, merged with the file as it is now."""
        with self._lock:
            new, self._new = self._new, {}
            new_keys, self._new_keys = self._new_keys, {}
        served = served or {}
        if served and not self._loaded:
            self._load()
        tests = {
            nodeid_digest(test): tuple(keys[:MAX_TEST_KEYS])
            for test, keys in list(served.items())[-MAX_TESTS:]
        }
        pack = self._pack
        if pack is not None:
            tests = {digest: keys for digest, keys in tests.items() if pack.tests.get(digest) != keys}
        self._close()
        if not (new or new_keys or tests) or not private_dir(self.path.parent):
            return
        lock = FileLock(self.path.with_suffix(".lock"))
        if not lock.acquire(SAVE_WAIT_SECONDS):
            return  # another process is writing it: this session's entries wait for the next
        try:
            current = self._current(new, new_keys, tests)
            if current is not None:
                write_pack(self.path, self.directory, self.prices, *current)
        finally:
            lock.release()

    # -- the file ----------------------------------------------------------------------------------------

    def _load(self) -> None:
        with self._lock:
            if self._loaded:
                return
            self._pack = open_pack(self.path, self.directory, self.prices)
            self._loaded = True

    def _close(self) -> None:
        with self._lock:
            pack, self._pack = self._pack, None
            self._loaded = True
        if pack is not None:
            pack.close()

    def _current(
        self, new: dict[str, bytes], new_keys: dict[bytes, str], new_tests: TestKeys
    ) -> tuple[dict[str, bytes], dict[bytes, str], TestKeys] | None:
        """What the file holds now with this session's additions, all of recordings still there (a key
        this session gave a request nobody recorded is not kept either); None if the directory cannot
        be listed."""
        try:
            names = set(os.listdir(self.directory))
        except OSError:
            return None
        entries: dict[str, bytes] = {}
        keys: dict[bytes, str] = {}
        tests: TestKeys = {}
        pack = open_pack(self.path, self.directory, self.prices)
        if pack is not None:
            try:
                entries, keys, tests = pack.blobs(), dict(pack.keys), dict(pack.tests)
            finally:
                pack.close()
        entries.update(new)
        keys.update(new_keys)
        for digest, served in new_tests.items():
            tests.pop(digest, None)  # to the end: the newest are kept
            tests[digest] = served

        def recorded(key: object) -> bool:
            return type(key) is str and f"{key[:_KEY_LENGTH]}{SUFFIX}" in names

        kept_tests: TestKeys = {}
        total = 0
        for digest, served in reversed(tests.items()):
            still = tuple(key for key in served if recorded(key)) if type(served) is tuple else ()
            if not still:
                continue
            total += len(still)
            if len(kept_tests) >= MAX_TESTS or total > MAX_ENTRIES:
                break
            kept_tests[digest] = still
        return (
            {key: blob for key, blob in entries.items() if recorded(key)},
            {fingerprint: value for fingerprint, value in keys.items() if recorded(value)},
            dict(reversed(kept_tests.items())),
        )
