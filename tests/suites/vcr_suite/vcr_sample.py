"""What the suite's tests share: the provider's URL, and the suite's own cassette format, registered in
``pytest_recording_configure``: YAML, with JSON bodies stored parsed (a prompt reads as a prompt in
review, not as one escaped string) and the server's cookies left out. vcr's own YAML serializer cannot
read these files back: bodies are not where it looks for them.
"""

from __future__ import annotations

import json
from typing import Any

import yaml

# Where the cassettes were recorded (the loopback server of tests/llm_server.py); nothing listens there
# when the suite replays.
BASE = "http://127.0.0.1:38457"
DROPPED_HEADERS = frozenset({"set-cookie", "x-request-id"})


def _parsed(body: Any) -> Any:
    """A JSON body parsed; None for anything else (binary, text, no body)."""
    try:
        text = body.decode("utf-8") if isinstance(body, bytes) else body
    except UnicodeDecodeError:
        return None
    if not isinstance(text, str) or not text.lstrip().startswith(("{", "[")):
        return None
    try:
        return json.loads(text)
    except ValueError:
        return None


def _store(part: dict[str, Any], body: Any) -> None:
    parsed = _parsed(body)
    if parsed is not None:
        part["parsed_body"] = parsed
        del part["body"]


class PrettyJsonBodies:
    @staticmethod
    def serialize(cassette_dict: dict[str, Any]) -> str:
        for interaction in cassette_dict["interactions"]:
            request, response = interaction["request"], interaction["response"]
            _store(request, request.get("body"))
            response["headers"] = {
                k: v for k, v in response.get("headers", {}).items() if k.lower() not in DROPPED_HEADERS
            }
            _store(response, response.get("body", {}).get("string"))
        text: str = yaml.dump(cassette_dict, Dumper=yaml.SafeDumper, sort_keys=False, allow_unicode=True)
        return text

    @staticmethod
    def deserialize(cassette_string: str) -> dict[str, Any]:
        data: dict[str, Any] = yaml.load(cassette_string, Loader=yaml.SafeLoader)
        for interaction in data["interactions"]:
            request, response = interaction["request"], interaction["response"]
            if "parsed_body" in request:
                request["body"] = json.dumps(request.pop("parsed_body"))
            if "parsed_body" in response:
                response["body"] = {"string": json.dumps(response.pop("parsed_body"))}
        return data


serializer = PrettyJsonBodies()
