"""The shared tier's options: parsed, validated, and the password kept out of every repr and message."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from pytest_promptcache.settings import SettingsError, build_settings
from pytest_promptcache.sharedconf import DEFAULT_TIMEOUT, SharedConfig, default_machine, redacted_url

PASSWORD = "hunter2-Secret"


def settings(env: dict[str, str] | None = None, **ini: Any) -> Any:
    return build_settings(rootdir=Path("/tmp"), cli_mode=None, cli_dir=None, env=env or {}, ini=ini).shared


def test_no_url_no_shared_tier() -> None:
    assert settings() is None
    assert settings({"PROMPTCACHE_SHARED": "  "}) is None


def test_env_wins_over_ini_and_defaults_apply() -> None:
    shared = settings(
        {"PROMPTCACHE_SHARED": "redis://env-host:6380/2"}, promptcache_shared="redis://ini-host"
    )
    assert shared.url == "redis://env-host:6380/2"
    assert (shared.prefix, shared.ttl, shared.timeout, shared.run_id) == (
        "promptcache",
        None,
        DEFAULT_TIMEOUT,
        None,
    )
    assert shared.machine == default_machine()


def test_every_option() -> None:
    shared = settings(
        {"PROMPTCACHE_MACHINE": "ci-7", "PROMPTCACHE_RUN_ID": "1234-1"},
        promptcache_shared="rediss://:pw@cache.internal:6380/1",
        promptcache_shared_prefix="team.llm",
        promptcache_shared_ttl="30d",
        promptcache_shared_timeout="0.25",
        promptcache_machine="ignored-for-env",
        promptcache_run_id="ignored-for-env",
    )
    assert (shared.machine, shared.run_id, shared.prefix) == ("ci-7", "1234-1", "team.llm")
    assert (shared.ttl, shared.timeout) == (timedelta(days=30), 0.25)


@pytest.mark.parametrize(
    "url",
    [
        f"redis://:{PASSWORD}@host:6379/0",
        f"redis://user:{PASSWORD}@host/0",
        f"rediss://default:{PASSWORD.replace('-', '%2D')}@[::1]:6380",
    ],
)
def test_the_password_is_never_in_a_repr(url: str) -> None:
    config = build_settings(
        rootdir=Path("/tmp"), cli_mode=None, cli_dir=None, env={"PROMPTCACHE_SHARED": url}, ini={}
    )
    assert config.shared is not None
    for text in (repr(config), str(config), repr(config.shared), config.shared.display):
        assert PASSWORD not in text
        assert "hunter2" not in text
    assert ":***@" in config.shared.display
    assert config.shared.redact(f"AUTH failed for {PASSWORD}") == "AUTH failed for ***"


def test_redacted_url_keeps_what_helps() -> None:
    assert redacted_url("redis://u:p@h:1/3") == "redis://u:***@h:1/3"
    assert redacted_url("redis://h") == "redis://h"
    assert redacted_url("unix:///run/redis.sock?password=x") == "unix:///run/redis.sock"
    assert redacted_url("redis://h:notaport") == "<an unparsable URL>"


@pytest.mark.parametrize(
    ("env", "ini", "message"),
    [
        ({"PROMPTCACHE_SHARED": f"http://:{PASSWORD}@h"}, {}, "is not a Redis URL; write redis://"),
        ({"PROMPTCACHE_SHARED": f"redis://:{PASSWORD}@h:99999"}, {}, "is not a Redis URL"),
        ({"PROMPTCACHE_SHARED": f"redis://:{PASSWORD}@:6379"}, {}, "names no host"),
        ({"PROMPTCACHE_SHARED": "redis://h:0"}, {}, "has port 0"),
        ({"PROMPTCACHE_SHARED": "redis://h/cache"}, {}, "the database after the host must be a number"),
        (
            {"PROMPTCACHE_SHARED": "redis://h", "PROMPTCACHE_MACHINE": "my laptop"},
            {},
            "is not a machine name",
        ),
        ({"PROMPTCACHE_SHARED": "redis://h", "PROMPTCACHE_RUN_ID": "x" * 200}, {}, "is not a run id"),
        ({}, {"promptcache_shared": "redis://h", "promptcache_shared_prefix": "a b"}, "is not a key prefix"),
        ({}, {"promptcache_shared": "redis://h", "promptcache_shared_ttl": "forever"}, "is not an age"),
        ({}, {"promptcache_shared": "redis://h", "promptcache_shared_ttl": "0d"}, "is not an age"),
        ({}, {"promptcache_shared": "redis://h", "promptcache_shared_timeout": "0"}, "greater than 0"),
        ({}, {"promptcache_shared": "redis://h", "promptcache_shared_timeout": "600"}, "at most 60"),
        ({}, {"promptcache_shared": "redis://h", "promptcache_shared_timeout": "soon"}, "not a number"),
    ],
)
def test_bad_values_are_one_line_errors_without_the_password(
    env: dict[str, str], ini: dict[str, str], message: str
) -> None:
    with pytest.raises(SettingsError, match=message) as caught:
        settings(env, **ini)
    assert PASSWORD not in str(caught.value)
    assert "\n" not in str(caught.value)


def test_the_default_machine_name_fits_a_key(monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    monkeypatch.setattr(socket, "gethostname", lambda: "runner 7 (eu)")
    assert default_machine() == "runner-7--eu-"
    monkeypatch.setattr(socket, "gethostname", lambda: "")
    assert default_machine() == "unknown-machine"


def test_a_password_in_the_query_is_redacted_too() -> None:
    config = SharedConfig(url=f"redis://h/0?password={PASSWORD}&db=1", machine="m")
    assert config.redact(f"refused {PASSWORD}") == "refused ***"
    assert PASSWORD not in repr(config)
    unparsable = SharedConfig(url="redis://[::1", machine="m")
    assert unparsable.redact("text") == "text"
    assert unparsable.display == "<an unparsable URL>"
