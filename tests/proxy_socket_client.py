"""An LLM client with its own socket code, as dspy's vendored engine or a hand-rolled script has: HTTP/1.1
written and read on a raw socket, nothing any adapter could intercept. ``tests/test_proxy.py`` runs it as
a subprocess pointed at the proxy.

    python proxy_socket_client.py URL JSON_BODY [--leave-after-first]

Prints one JSON line: the status, the response headers, the body (JSON), and for a chunked body the
chunks as they arrived. ``--leave-after-first`` hangs up once the first chunk of a chunked body arrived.
"""

from __future__ import annotations

import json
import os
import socket
import sys
from typing import Any
from urllib.parse import urlsplit

TIMEOUT = 30.0


def _line(reader: Any) -> bytes:
    line: bytes = reader.readline(65537)
    if not line:
        raise ConnectionError("the server closed the connection")
    return line


def request(url: str, body: bytes, *, leave_after_first: bool = False) -> dict[str, Any]:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    with socket.create_connection((host, port), timeout=TIMEOUT) as sock:
        head = (
            f"POST {parts.path} HTTP/1.1\r\nHost: {host}:{port}\r\ncontent-type: application/json\r\n"
            f"authorization: Bearer {os.environ.get('OPENAI_API_KEY', '')}\r\ncontent-length: {len(body)}\r\n"
            "connection: close\r\n\r\n"
        )
        sock.sendall(head.encode() + body)
        reader = sock.makefile("rb")
        status = int(_line(reader).split()[1])
        headers: dict[str, str] = {}
        while (line := _line(reader)) not in (b"\r\n", b"\n"):
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        chunks: list[str] = []
        if headers.get("transfer-encoding") == "chunked":
            while (size := int(_line(reader).split(b";")[0], 16)) > 0:
                chunks.append(reader.read(size).decode())
                reader.read(2)
                if leave_after_first:
                    break
            data = "".join(chunks)
        else:
            data = reader.read(int(headers["content-length"])).decode()
    result: dict[str, Any] = {"status": status, "headers": headers, "chunks": chunks}
    if headers.get("content-type", "").startswith("application/json"):
        result["body"] = json.loads(data)
    return result


def main(argv: list[str]) -> int:
    url, body = argv[0], argv[1].encode()
    print(json.dumps(request(url, body, leave_after_first="--leave-after-first" in argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
