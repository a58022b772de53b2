"""Undoing a body's content-encoding (gzip, deflate, brotli) incrementally, so a live stream can be
parsed while it passes through."""

from __future__ import annotations

import zlib
from typing import Any, Protocol


class _Decompressor(Protocol):
    def decompress(self, data: bytes) -> bytes: ...


class _Identity:
    def decompress(self, data: bytes) -> bytes:
        return data


class _Process:
    def __init__(self, decompressor: Any) -> None:
        self._decompressor = decompressor

    def decompress(self, data: bytes) -> bytes:
        return self._decompressor.process(data)  # type: ignore[no-any-return]


class UnsupportedEncoding(Exception):
    pass


def _decompressor(encoding: str) -> _Decompressor:
    encoding = encoding.strip().lower()
    if encoding in ("", "identity"):
        return _Identity()
    if encoding in ("gzip", "x-gzip"):
        return zlib.decompressobj(zlib.MAX_WBITS | 16)
    if encoding == "deflate":
        return zlib.decompressobj()
    if encoding == "br":
        try:
            import brotli  # type: ignore[import-untyped]
        except ImportError:
            raise UnsupportedEncoding("br (install 'brotli' to record brotli bodies)") from None
        # brotli 1.x's streaming decompressor calls its method process(); older ones decompress().
        decompressor = brotli.Decompressor()
        if not hasattr(decompressor, "decompress"):
            return _Process(decompressor)
        return decompressor  # type: ignore[no-any-return]
    raise UnsupportedEncoding(encoding)


class BodyDecoder:
    """Undoes content-encoding incrementally, so a stream can be parsed while it passes through."""

    def __init__(self, content_encoding: str | None) -> None:
        codings = [c for c in (content_encoding or "").split(",") if c.strip()]
        # Encodings are listed in the order applied; undo them in reverse.
        self._steps = [_decompressor(c) for c in reversed(codings)]

    def decode(self, chunk: bytes) -> bytes:
        for step in self._steps:
            chunk = step.decompress(chunk)
        return chunk
