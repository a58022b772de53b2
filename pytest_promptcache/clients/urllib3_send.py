"""An LLM request through urllib3's patched ``urlopen``: the engine's decision turned into an urllib3
``HTTPResponse``, the live body teed through the call's recorder. Imported only once an LLM request
arrives, when urllib3 is imported already."""

from __future__ import annotations

import io
import threading
import weakref
from collections.abc import Callable, Generator, Mapping
from http.client import responses as reasons
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from urllib3 import HTTPHeaderDict
from urllib3.exceptions import ResponseNotChunked
from urllib3.response import HTTPResponse
from urllib3.util.response import is_fp_closed
from urllib3.util.retry import Retry

from ..keys import RawRequest
from ..replay import Replay
from ..streams import BodyRecorder
from .drive import decide_sync, send_sync
from .registry import Source

# urlopen's parameters after ``url``, in order, for callers that pass them positionally.
POSITIONAL = ("body", "headers", "retries", "redirect", "assert_same_host")


def handle(
    original: Callable[..., Any],
    pool: Any,
    method: str,
    url: str,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    source: Source,
    sending: threading.local,
) -> Any:
    """An LLM request sent through ``pool``: served, missed, waited for, or sent live and teed."""
    if args:
        kwargs = {**dict(zip(POSITIONAL, args, strict=False)), **kwargs}
    body = body_bytes(kwargs.get("body"))
    if kwargs.get("body") is not None and not isinstance(kwargs["body"], bytes):
        # A file or generator body was read to key it: send the bytes that were keyed (which need no
        # rewinding position for a retry).
        kwargs["body"] = body
        kwargs.pop("body_pos", None)
    headers = kwargs.get("headers")
    raw = raw_request(pool, method, url, pool.headers if headers is None else headers, body)
    decision = decide_sync(source.engine(), raw)
    preload = kwargs.get("preload_content", True)
    if isinstance(decision, Replay):
        return ReplayResponse.serve(
            decision,
            method=method,
            url=url,
            preload_content=preload,
            decode_content=kwargs.get("decode_content", True),
            retries=kwargs.get("retries"),
        )
    # Read through the tee below, never by urllib3 before the tee is in place.
    kwargs["preload_content"] = False

    def send() -> Any:
        outer = getattr(sending, "live", False)
        sending.live = True
        try:
            return original(pool, method, url, **kwargs)
        finally:
            sending.live = outer

    response = send_sync(decision, send, _head, _discard)
    recorder = decision.recorder_for(*_head(response))
    if recorder is not None:
        tee(response, recorder)
    if preload:
        response.data  # noqa: B018  (preloading, as urllib3 would have: through the tee)
    return response


def body_bytes(body: Any) -> bytes:
    """The request body as bytes, whatever urllib3 was given: bytes, text, a file, or an iterable."""
    if body is None:
        return b""
    if isinstance(body, bytes):
        return body
    if isinstance(body, str):
        return body.encode("utf-8")
    if isinstance(body, bytearray | memoryview):
        return bytes(body)
    if hasattr(body, "read"):
        data = body.read()
        return data.encode("utf-8") if isinstance(data, str) else bytes(data)
    return b"".join(part.encode("utf-8") if isinstance(part, str) else bytes(part) for part in body)


def _text(value: str | bytes) -> str:
    return value if value.__class__ is str else value.decode("latin-1")  # type: ignore[union-attr]


def _header_items(headers: Mapping[Any, Any]) -> Any:
    # HTTPHeaderDict.items() splits repeated headers at a cost per value; merged is what a key needs.
    merged = getattr(headers, "itermerged", None)
    return merged() if merged is not None else headers.items()


def raw_request(pool: Any, method: str, url: str, headers: Mapping[Any, Any], body: bytes) -> RawRequest:
    if url.startswith("/"):
        scheme, host, port = pool.scheme, pool.host, pool.port
        path, _, query = url.partition("?")
    else:
        parts = urlsplit(url)
        scheme, host, port = parts.scheme or pool.scheme, parts.hostname or pool.host, parts.port
        path, query = parts.path or "/", parts.query
    return RawRequest(
        method=method,
        scheme=scheme,
        host=host,
        port=port,
        path=unquote(path) if "%" in path else path,
        query=tuple(parse_qsl(query, keep_blank_values=True)) if query else (),
        headers=tuple([(_text(k).lower(), _text(v)) for k, v in _header_items(headers)]),
        body=body,
        target=path + ("?" + query if query else ""),
    )


def _head(response: Any) -> tuple[int, list[tuple[str, str]]]:
    return response.status, list(response.headers.items())


def _discard(response: Any) -> None:
    # A response our retries drop: read off so its connection goes back to the pool.
    response.drain_conn()
    response.release_conn()


class ReplayResponse(HTTPResponse):
    """A recorded response, as urllib3 reads a live one: the body from ``read``, ``data`` and ``stream``;
    a stream (a replay without a content-length) as chunked, its recorded chunks (an SSE event, an AWS
    event-stream message) one by one from ``read_chunked``, so from ``stream``, requests' ``iter_content``
    and ``iter_lines`` and botocore's event streams too, as they come from a live server."""

    def __init__(
        self,
        replay: Replay,
        *,
        method: str,
        url: str,
        preload_content: bool,
        decode_content: bool,
        retries: Any,
    ) -> None:
        chunks = replay.chunks
        self._chunks = chunks
        super().__init__(
            body=io.BytesIO(chunks[0] if len(chunks) == 1 else b"".join(chunks)),
            headers=HTTPHeaderDict(replay.headers),
            status=replay.status,
            reason=reasons.get(replay.status),
            version=11,
            version_string="HTTP/1.1",
            preload_content=preload_content,
            decode_content=decode_content,
            retries=retries if isinstance(retries, Retry) else None,
            request_method=method,
            request_url=url,
        )
        if "content-length" not in self.headers:
            self.chunked = True

    @classmethod
    def serve(
        cls,
        replay: Replay,
        *,
        method: str,
        url: str,
        preload_content: bool,
        decode_content: bool,
        retries: Any,
    ) -> ReplayResponse:
        """The response for one call: a copy of a prototype built (by urllib3 itself) once per recording
        and way of reading it. Building an HTTPResponse costs tens of microseconds (its headers, its
        length, preloading); a copy costs a few, and shares nothing a client can change."""
        proto = _prototype(replay, method, preload_content, decode_content)
        response = cls.__new__(cls)
        state = response.__dict__
        state.update(proto.__dict__)
        state["headers"] = proto.headers.copy()
        state["_decoded_buffer"] = type(proto._decoded_buffer)()
        # Preloaded: the body is in ``_body`` and the file is read to its end, as urllib3 leaves it.
        state["_fp"] = io.BytesIO(b"" if preload_content else proto._fp.getvalue())  # type: ignore[union-attr]
        state["_request_url"] = url
        response.retries = retries if isinstance(retries, Retry) else None
        return response

    def supports_chunked_reads(self) -> bool:
        return self.chunked

    def read_chunked(self, amt: int | None = None, decode_content: bool | None = None) -> Generator[bytes]:
        # Replays are stored decoded: there is nothing to decode, whatever ``decode_content`` says.
        if not self.chunked:
            raise ResponseNotChunked("the recorded response is not a stream: read it, not read_chunked")
        fp = self._fp
        if fp is None or fp.closed or amt == 0:
            return
        if amt is not None and amt < 0:
            amt = None
        position = fp.tell()
        end = 0
        for chunk in self._chunks:
            start, end = end, end + len(chunk)
            if position == start and (amt is None or amt >= len(chunk)):
                # The whole recorded chunk: hand it over as it is, keeping the file's place in step.
                position = fp.seek(end)
                yield chunk
                continue
            while position < end:
                data = fp.read(end - position if amt is None else min(amt, end - position))
                position += len(data)
                yield data
        fp.close()


# Prototypes by recording (its Replay, which the store keeps while it is in memory) and way of reading.
PROTOTYPES = 1024
_prototypes: dict[tuple[int, str, bool, bool], tuple[Replay, ReplayResponse]] = {}
_prototypes_lock = threading.Lock()


def _prototype(replay: Replay, method: str, preload: bool, decode: bool) -> ReplayResponse:
    key = (id(replay), method, preload, decode)
    entry = _prototypes.get(key)
    if entry is not None and entry[0] is replay:
        return entry[1]
    proto = ReplayResponse(
        replay, method=method, url="", preload_content=preload, decode_content=decode, retries=None
    )
    with _prototypes_lock:
        while len(_prototypes) >= PROTOTYPES:
            del _prototypes[next(iter(_prototypes))]
        # Holding the Replay keeps its id from being reused for another while the entry lives.
        _prototypes[key] = (replay, proto)
    return proto


_tee_classes: dict[type, type] = {}


def tee(response: Any, recorder: BodyRecorder) -> None:
    """Watch ``response``'s body go by on its way to the client, however the client reads it."""
    cls = type(response)
    tee_cls = _tee_classes.get(cls)
    if tee_cls is None:
        tee_cls = _tee_classes[cls] = _make_tee(cls)
    response._promptcache_recorder = recorder
    response.__class__ = tee_cls
    # A response dropped unread must still end its call, or identical waiting calls would hang.
    weakref.finalize(response, recorder.collected)


def _make_tee(base: type) -> type:
    class TeeResponse(base):  # type: ignore[misc]
        """The live response, its raw bytes (before content decoding) fed to the recorder: those of
        ``read``/``read1``/``stream``/``drain_conn`` through ``_raw_read``, those of ``read_chunked``
        through ``_handle_chunk``."""

        _promptcache_recorder: BodyRecorder
        _promptcache_breaking = False

        def _body_ended(self) -> None:
            recorder = self._promptcache_recorder
            if self._fp is not None and not is_fp_closed(self._fp):
                return
            if self.length_remaining:
                # botocore turns urllib3's own check off (enforce_content_length=False).
                recorder.failed(f"the body ended {self.length_remaining} bytes short of its content-length")
            else:
                recorder.ended()

        def _raw_read(self, amt: int | None = None, *, read1: bool = False) -> bytes:
            try:
                data: bytes = super()._raw_read(amt, read1=read1)
            except BaseException as exc:
                self._promptcache_recorder.failed(f"the live body failed: {exc!r}")
                raise
            if data:
                self._promptcache_recorder.feed(data)
            self._body_ended()
            return data

        def _update_chunk_length(self) -> None:
            # urllib3 closes the response itself when the chunk framing breaks (a cut stream), then
            # raises: that is the live stream failing, not the client letting go of it.
            self._promptcache_breaking = True
            try:
                super()._update_chunk_length()
            except BaseException as exc:
                self._promptcache_recorder.failed(f"the live stream failed: {exc!r}")
                raise
            finally:
                self._promptcache_breaking = False

        def _handle_chunk(self, amt: int | None) -> bytes:
            data: bytes = super()._handle_chunk(amt)
            if data:
                self._promptcache_recorder.feed(data)
            return data

        def read_chunked(
            self, amt: int | None = None, decode_content: bool | None = None
        ) -> Generator[bytes]:
            try:
                yield from super().read_chunked(amt, decode_content=decode_content)
            except GeneratorExit:
                # The client stopped reading; close() decides whether that was after the end.
                raise
            except BaseException as exc:
                self._promptcache_recorder.failed(f"the live stream failed: {exc!r}")
                raise
            self._body_ended()

        def close(self) -> None:
            try:
                super().close()
            finally:
                if not self._promptcache_breaking:
                    self._promptcache_recorder.closed()

    TeeResponse.__name__ = TeeResponse.__qualname__ = f"Tee{base.__name__}"
    return TeeResponse
