"""Settings: CLI > environment > ini, every bad value's message, endpoint patterns, marker options."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from pytest_promptcache.marker import TestOptions
from pytest_promptcache.prices import ModelPrice
from pytest_promptcache.settings import (
    DEFAULT_ENDPOINTS,
    DEFAULT_KEY_HEADERS,
    DEFAULT_SECRET_HEADERS,
    DEFAULT_SECRET_PARAMS,
    DEFAULT_SECRET_PATTERNS,
    EndpointPattern,
    Expiry,
    Mode,
    Settings,
    SettingsError,
    build_settings,
    parse_endpoints,
)


def build(
    tmp_path: Path,
    *,
    ini: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
    cli_mode: str | None = None,
    cli_dir: str | None = None,
    cli_budget: str | None = None,
    cli_max_age: str | None = None,
    cli_match: str | None = None,
) -> Settings:
    return build_settings(
        rootdir=tmp_path,
        cli_mode=cli_mode,
        cli_dir=cli_dir,
        env=env or {},
        ini=ini or {},
        cli_budget=cli_budget,
        cli_max_age=cli_max_age,
        cli_match=cli_match,
    )


def error(tmp_path: Path, **kwargs: Any) -> str:
    with pytest.raises(SettingsError) as err:
        build(tmp_path, **kwargs)
    return str(err.value)


def test_defaults(tmp_path: Path) -> None:
    s = build(tmp_path)
    assert s.mode is Mode.REPLAY
    assert s.cassette_dir == tmp_path.resolve() / "cassettes"
    assert s.endpoints == tuple(EndpointPattern(None, e) for e in DEFAULT_ENDPOINTS)
    assert (s.ignore_fields, s.normalize) == ((), ())
    assert (s.max_age, s.on_expiry, s.similar_threshold) == (None, Expiry.WARN, None)
    assert s.key_headers == DEFAULT_KEY_HEADERS
    assert s.secret_headers == DEFAULT_SECRET_HEADERS
    assert s.secret_params == DEFAULT_SECRET_PARAMS
    assert s.secret_patterns == DEFAULT_SECRET_PATTERNS
    assert (s.memory_size, s.prices, s.budget_usd, s.state_dir) == (4096, {}, None, None)
    assert (s.record_rpm, s.record_tpm, s.record_retries) == (None, None, 0)


# -- mode: CLI > env > ini --------------------------------------------------------------------------------


def test_mode_precedence(tmp_path: Path) -> None:
    ini = {"promptcache_mode": "rewrite"}
    env = {"PROMPTCACHE_MODE": "off"}
    assert build(tmp_path, ini=ini).mode is Mode.REWRITE
    assert build(tmp_path, ini=ini, env=env).mode is Mode.OFF
    assert build(tmp_path, ini=ini, env=env, cli_mode="record").mode is Mode.RECORD
    # Blank values do not count; case and spaces do not matter.
    assert build(tmp_path, ini=ini, env={"PROMPTCACHE_MODE": "  "}).mode is Mode.REWRITE
    assert build(tmp_path, ini={"promptcache_mode": " "}).mode is Mode.REPLAY
    assert build(tmp_path, env={"PROMPTCACHE_MODE": " Record "}).mode is Mode.RECORD


@pytest.mark.parametrize(
    ("kwargs", "source"),
    [
        ({"cli_mode": "play"}, "--promptcache"),
        ({"env": {"PROMPTCACHE_MODE": "play"}}, "PROMPTCACHE_MODE"),
        ({"ini": {"promptcache_mode": "play"}}, "ini promptcache_mode"),
    ],
)
def test_unknown_mode_names_its_source_and_the_valid_modes(
    tmp_path: Path, kwargs: dict[str, Any], source: str
) -> None:
    assert (
        error(tmp_path, **kwargs)
        == f"{source}: unknown mode 'play'; valid modes are replay, record, rewrite, off"
    )


def test_a_bad_lower_source_does_not_matter_when_a_higher_one_is_set(tmp_path: Path) -> None:
    assert build(tmp_path, cli_mode="off", env={"PROMPTCACHE_MODE": "bad"}).mode is Mode.OFF
    assert build(tmp_path, cli_budget="1", ini={"promptcache_budget": "bad"}).budget_usd == 1.0
    assert build(tmp_path, cli_max_age="1h", ini={"promptcache_max_age": "bad"}).max_age == timedelta(hours=1)
    assert build(tmp_path, cli_match="exact", ini={"promptcache_match": "bad"}).similar_threshold is None


# -- directories ------------------------------------------------------------------------------------------


def test_cassette_dir_cli_over_ini_relative_to_the_rootdir(tmp_path: Path) -> None:
    ini = {"promptcache_dir": "recordings"}
    assert build(tmp_path, ini=ini).cassette_dir == tmp_path.resolve() / "recordings"
    assert build(tmp_path, ini=ini, cli_dir="sub/../other").cassette_dir == tmp_path.resolve() / "other"
    assert build(tmp_path, cli_dir=str(tmp_path / "abs")).cassette_dir == tmp_path.resolve() / "abs"


def test_cassette_dir_may_not_be_a_file(tmp_path: Path) -> None:
    (tmp_path / "cassettes").write_text("")
    expected = f"cassette directory {tmp_path.resolve() / 'cassettes'} exists and is not a directory"
    assert error(tmp_path) == expected


def test_state_dir_is_relative_to_the_rootdir(tmp_path: Path) -> None:
    assert (
        build(tmp_path, ini={"promptcache_state_dir": " .state "}).state_dir == tmp_path.resolve() / ".state"
    )


# -- headers, params, patterns ----------------------------------------------------------------------------


def test_extra_headers_and_params_join_the_defaults_lower_cased(tmp_path: Path) -> None:
    s = build(
        tmp_path,
        ini={
            "promptcache_key_headers": "X-Tenant\nanthropic-version",
            "promptcache_secret_headers": ["X-Internal-Auth", "Cookie"],
            "promptcache_secret_params": "SAS\n\n",
            "promptcache_secret_patterns": [r"corp-[0-9]{6}"],
        },
    )
    assert s.key_headers == (*DEFAULT_KEY_HEADERS, "x-tenant")
    assert s.secret_headers == (*DEFAULT_SECRET_HEADERS, "x-internal-auth")
    assert s.secret_params == (*DEFAULT_SECRET_PARAMS, "sas")
    assert s.secret_patterns == (*DEFAULT_SECRET_PATTERNS, r"corp-[0-9]{6}")


def test_a_secret_header_can_never_be_a_key_header(tmp_path: Path) -> None:
    ini = {"promptcache_key_headers": "Authorization\nx-internal", "promptcache_secret_headers": "X-Internal"}
    assert error(tmp_path, ini=ini) == (
        "promptcache_key_headers: authorization, x-internal carry secrets and can never take part in a key"
    )


def test_bad_secret_pattern(tmp_path: Path) -> None:
    message = error(tmp_path, ini={"promptcache_secret_patterns": "fine\n(broken"})
    assert message.startswith("promptcache_secret_patterns: '(broken' is not a regex: ")


# -- rules, prices ----------------------------------------------------------------------------------------


def test_rules_are_kept_as_written_and_validated(tmp_path: Path) -> None:
    s = build(
        tmp_path, ini={"promptcache_ignore_fields": "user\nmessages[*].id", "promptcache_normalize": "uuid"}
    )
    assert (s.ignore_fields, s.normalize) == (("user", "messages[*].id"), ("uuid",))
    assert (
        error(tmp_path, ini={"promptcache_ignore_fields": "a..b"})
        == "ignored field 'a..b' has an empty segment"
    )
    assert error(tmp_path, ini={"promptcache_normalize": "dates"}).startswith("normaliser 'dates' is neither")


def test_prices_are_parsed_and_their_errors_are_settings_errors(tmp_path: Path) -> None:
    s = build(tmp_path, ini={"promptcache_prices": "my-model input=0.4 output=1.6 cache_read=0.1"})
    assert s.prices == {"my-model": ModelPrice(Decimal("0.4"), Decimal("1.6"), Decimal("0.1"))}
    assert error(tmp_path, ini={"promptcache_prices": "my-model input=0.4"}) == (
        "promptcache_prices: the line for 'my-model' needs output=..."
    )


# -- numbers ----------------------------------------------------------------------------------------------


def test_counts(tmp_path: Path) -> None:
    s = build(
        tmp_path,
        ini={
            "promptcache_memory_size": "10",
            "promptcache_record_rpm": "60",
            "promptcache_record_tpm": " 1000 ",
            "promptcache_record_retries": "0",
        },
    )
    assert (s.memory_size, s.record_rpm, s.record_tpm, s.record_retries) == (10, 60, 1000, 0)
    assert build(tmp_path, ini={"promptcache_record_retries": "3"}).record_retries == 3


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("promptcache_memory_size", "many", "promptcache_memory_size: 'many' is not a whole number"),
        ("promptcache_memory_size", "0", "promptcache_memory_size: must be at least 1, got 0"),
        ("promptcache_record_rpm", "0", "promptcache_record_rpm: must be at least 1, got 0"),
        ("promptcache_record_tpm", "1.5", "promptcache_record_tpm: '1.5' is not a whole number"),
        ("promptcache_record_retries", "-1", "promptcache_record_retries: must be at least 0, got -1"),
    ],
)
def test_count_errors(tmp_path: Path, name: str, value: str, message: str) -> None:
    assert error(tmp_path, ini={name: value}) == message


def test_budget(tmp_path: Path) -> None:
    assert build(tmp_path, ini={"promptcache_budget": "$2.50"}).budget_usd == 2.5
    assert build(tmp_path, ini={"promptcache_budget": "5"}, cli_budget=" $0 ").budget_usd == 0.0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"cli_budget": "lots"}, "--promptcache-budget: 'lots' is not an amount of US dollars (e.g. 2.50)"),
        (
            {"cli_budget": "-1"},
            "--promptcache-budget: the budget must be a finite amount of 0 or more, got '-1'",
        ),
        (
            {"cli_budget": "inf"},
            "--promptcache-budget: the budget must be a finite amount of 0 or more, got 'inf'",
        ),
        (
            {"cli_budget": "nan"},
            "--promptcache-budget: the budget must be a finite amount of 0 or more, got 'nan'",
        ),
        ({"ini": {"promptcache_budget": "x"}}, "ini promptcache_budget: 'x' is not an amount of US dollars"),
    ],
)
def test_budget_errors(tmp_path: Path, kwargs: dict[str, Any], message: str) -> None:
    assert error(tmp_path, **kwargs).startswith(message)


@pytest.mark.parametrize(
    ("value", "age"),
    [
        ("12h", timedelta(hours=12)),
        (" 30D ", timedelta(days=30)),
        ("2w", timedelta(weeks=2)),
        ("1.5d", timedelta(hours=36)),
    ],
)
def test_max_age(tmp_path: Path, value: str, age: timedelta) -> None:
    assert build(tmp_path, ini={"promptcache_max_age": value}).max_age == age
    assert build(tmp_path, cli_max_age=value).max_age == age


@pytest.mark.parametrize("value", ["12", "3m", "h", "-1d", "1 d 2h"])
def test_max_age_errors(tmp_path: Path, value: str) -> None:
    assert error(tmp_path, cli_max_age=value) == (
        f"--promptcache-max-age / promptcache_max_age: {value!r} is not an age; write a number and a unit: "
        "12h, 30d or 2w"
    )


def test_on_expiry(tmp_path: Path) -> None:
    assert build(tmp_path, ini={"promptcache_on_expiry": " FAIL "}).on_expiry is Expiry.FAIL
    assert build(tmp_path, ini={"promptcache_on_expiry": "rerecord"}).on_expiry is Expiry.RERECORD
    assert error(tmp_path, ini={"promptcache_on_expiry": "ignore"}) == (
        "promptcache_on_expiry: 'ignore' is not one of warn, fail, rerecord"
    )


@pytest.mark.parametrize(
    ("value", "threshold"), [("exact", None), ("", None), (" Similar:0.9 ", 0.9), ("similar:1", 1.0)]
)
def test_match(tmp_path: Path, value: str, threshold: float | None) -> None:
    assert build(tmp_path, cli_match=value).similar_threshold == threshold
    assert build(tmp_path, ini={"promptcache_match": value}).similar_threshold == threshold


@pytest.mark.parametrize(
    "value", ["similar", "similar:0", "similar:1.5", "similar:abc", "fuzzy:0.9", "similar:-0.5"]
)
def test_match_errors(tmp_path: Path, value: str) -> None:
    assert error(tmp_path, ini={"promptcache_match": value}) == (
        f"--promptcache-match / promptcache_match: {value!r} is not a matching rule; "
        "use 'exact' (the default) or 'similar:THRESHOLD' with a threshold in (0, 1], e.g. similar:0.9"
    )


# -- endpoints --------------------------------------------------------------------------------------------


def test_endpoint_lines_replace_the_defaults_unless_one_says_defaults(tmp_path: Path) -> None:
    only = build(tmp_path, ini={"promptcache_endpoints": "/v1/rerank\n# a comment\n\n"}).endpoints
    assert only == (EndpointPattern(None, "/v1/rerank"),)
    both = build(
        tmp_path, ini={"promptcache_endpoints": ["defaults", "LLM.internal:8080/generate", "defaults"]}
    )
    assert both.endpoints == (
        *(EndpointPattern(None, e) for e in DEFAULT_ENDPOINTS),
        EndpointPattern("llm.internal:8080", "/generate"),
    )


def test_no_endpoint_lines_mean_the_defaults() -> None:
    assert parse_endpoints(["", "  ", "# only comments"]) == parse_endpoints(["defaults"])


def test_endpoint_patterns_match_a_suffix_on_any_host_or_on_one() -> None:
    anywhere = EndpointPattern.parse(" :generateContent ")
    assert anywhere.matches("example.com", "/v1beta/models/gemini-2.5-flash:generateContent")
    assert not anywhere.matches("example.com", "/v1beta/models/gemini-2.5-flash:countTokens")
    one_host = EndpointPattern.parse("llm.internal:8080/generate")
    assert one_host.matches("llm.internal:8080", "/api/generate")
    assert not one_host.matches("llm.internal", "/api/generate")
    assert not one_host.matches("other:8080", "/api/generate")


def test_is_llm_endpoint(tmp_path: Path) -> None:
    s = build(tmp_path)
    assert s.is_llm_endpoint("api.openai.com", "/v1/chat/completions")
    assert s.is_llm_endpoint("127.0.0.1:8765", "/v1/messages")
    assert not s.is_llm_endpoint("api.openai.com", "/v1/models")
    assert not s.is_llm_endpoint("api.openai.com", "/v1/chat/completions/abc")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("  ", "promptcache_endpoints: empty pattern"),
        ("rerank", "promptcache_endpoints: 'rerank' is not a pattern"),
        ("host-only:8080", "promptcache_endpoints: 'host-only:8080' is not a pattern"),
    ],
)
def test_endpoint_pattern_errors(text: str, message: str) -> None:
    with pytest.raises(SettingsError) as err:
        EndpointPattern.parse(text)
    assert str(err.value).startswith(message)


def test_endpoint_pattern_error_says_how_to_write_one(tmp_path: Path) -> None:
    assert error(tmp_path, ini={"promptcache_endpoints": "rerank"}) == (
        "promptcache_endpoints: 'rerank' is not a pattern; write a path suffix such as '/v1/rerank', "
        "'/model/*/converse' or ':generateContent', or 'host[:port]/path-suffix' for one host"
    )


# -- TestOptions.from_marker ------------------------------------------------------------------------------

WHERE = "test_app.py::test_x"


def test_marker_options() -> None:
    assert TestOptions.from_marker((), {}, WHERE) == TestOptions()
    options = TestOptions.from_marker(
        (), {"mode": "Record", "normalize": "uuid", "ignore_fields": ["user"]}, WHERE
    )
    assert options == TestOptions(mode=Mode.RECORD, normalize=("uuid",), ignore_fields=("user",))
    assert TestOptions.from_marker((), {"mode": Mode.OFF, "normalize": ("iso-date",)}, WHERE).mode is Mode.OFF


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        (
            ("record",),
            {},
            f"{WHERE}: @pytest.mark.promptcache takes keyword arguments only "
            "(mode, normalize, ignore_fields, scope), got ('record',)",
        ),
        (
            (),
            {"mdoe": "record", "match": "x"},
            f"{WHERE}: @pytest.mark.promptcache got unknown argument(s) match, mdoe; "
            "valid ones are: mode, normalize, ignore_fields, scope",
        ),
        (
            (),
            {"mode": "play"},
            f"{WHERE}: @pytest.mark.promptcache(mode=...): unknown mode 'play'; "
            "valid modes are replay, record, rewrite, off",
        ),
        ((), {"normalize": 3}, f"{WHERE}: @pytest.mark.promptcache(normalize=...) takes a list of strings"),
        (
            (),
            {"ignore_fields": ["a", 1]},
            f"{WHERE}: @pytest.mark.promptcache(ignore_fields=...) takes a list of strings",
        ),
        (
            (),
            {"ignore_fields": ["a..b"]},
            f"{WHERE}: @pytest.mark.promptcache: ignored field 'a..b' has an empty segment",
        ),
        ((), {"normalize": ["dates"]}, f"{WHERE}: @pytest.mark.promptcache: normaliser 'dates' is neither"),
    ],
)
def test_marker_errors(args: tuple[Any, ...], kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(SettingsError) as err:
        TestOptions.from_marker(args, kwargs, WHERE)
    assert str(err.value).startswith(message)
