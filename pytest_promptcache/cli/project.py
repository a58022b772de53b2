"""The project a command runs in: pytest's configuration, found without pytest, and what it sets.

The command never imports pytest (it must start fast and run where only the recordings and this package
are), so it reads the configuration files itself, in the order pytest looks for them.
"""

from __future__ import annotations

import configparser
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from ..settings import DEFAULT_SECRET_HEADERS, DEFAULT_SECRET_PARAMS, DEFAULT_SECRET_PATTERNS
from ..usage import PriceBook, PriceError, parse_prices

DEFAULT_DIR = "cassettes"
PATTERN_NAMES = dict(
    zip(
        DEFAULT_SECRET_PATTERNS,
        (
            "an Anthropic key (sk-ant-...)",
            "an OpenAI key (sk-...)",
            "a Google API key (AIza...)",
            "a bearer token",
        ),
        strict=True,
    )
)


class CliError(Exception):
    """The command cannot do what was asked; the message says why and what to do."""

    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class ProjectConfig:
    rootdir: Path
    inifile: Path | None
    ini: Mapping[str, Any]

    def string(self, name: str) -> str:
        value = self.ini.get(name)
        if value is None:
            return ""
        if isinstance(value, list):
            return "\n".join(str(v) for v in value).strip()
        return str(value).strip()

    def lines(self, name: str) -> list[str]:
        value = self.ini.get(name)
        if value is None:
            return []
        items = [str(v) for v in value] if isinstance(value, list) else str(value).splitlines()
        return [line.strip() for line in items if line.strip()]


def _ini_section(path: Path, section: str) -> dict[str, str] | None:
    # Like pytest's iniconfig: no interpolation, keys as written, later duplicates win.
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(path.read_text(encoding="utf-8"), source=str(path))
    if not parser.has_section(section):
        return None
    return {k: v.strip() for k, v in parser.items(section, raw=True)}


def _toml(path: Path) -> dict[str, Any]:
    return tomllib.loads(path.read_text(encoding="utf-8"))


def _load_pytest_toml(path: Path) -> dict[str, Any] | None:
    table = _toml(path).get("pytest")
    return table if isinstance(table, dict) else {}


def _load_pytest_ini(path: Path) -> dict[str, Any] | None:
    return _ini_section(path, "pytest") or {}


def _load_pyproject(path: Path) -> dict[str, Any] | None:
    tool = _toml(path).get("tool")
    table = tool.get("pytest") if isinstance(tool, dict) else None
    if not isinstance(table, dict):
        return None
    native = {k: v for k, v in table.items() if k != "ini_options"}
    if native:
        return native
    ini_options = table.get("ini_options")
    return ini_options if isinstance(ini_options, dict) else None


def _load_tox(path: Path) -> dict[str, Any] | None:
    return _ini_section(path, "pytest")


def _load_setup_cfg(path: Path) -> dict[str, Any] | None:
    return _ini_section(path, "tool:pytest")


# pytest's order of precedence in one directory; a file whose loader returns None is not a config.
CONFIG_LOADERS: tuple[tuple[str, Callable[[Path], dict[str, Any] | None]], ...] = (
    ("pytest.toml", _load_pytest_toml),
    (".pytest.toml", _load_pytest_toml),
    ("pytest.ini", _load_pytest_ini),
    (".pytest.ini", _load_pytest_ini),
    ("pyproject.toml", _load_pyproject),
    ("tox.ini", _load_tox),
    ("setup.cfg", _load_setup_cfg),
)


def find_config(start: Path) -> ProjectConfig:
    """The rootdir and ini values pytest would use when run with no arguments in ``start``."""
    start = start.resolve()
    first_pyproject: Path | None = None
    for base in (start, *start.parents):
        for name, loader in CONFIG_LOADERS:
            path = base / name
            if not path.is_file():
                continue
            if name == "pyproject.toml" and first_pyproject is None:
                first_pyproject = path
            try:
                ini = loader(path)
            except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError, configparser.Error) as exc:
                raise CliError(f"cannot read the pytest configuration {path}: {exc}") from None
            if ini is not None:
                return ProjectConfig(base, path, ini)
    # pytest's fallbacks when no file configures it: a pyproject.toml, then a setup.py, marks the root.
    if first_pyproject is not None:
        return ProjectConfig(first_pyproject.parent, first_pyproject, {})
    for base in (start, *start.parents):
        if (base / "setup.py").is_file():
            return ProjectConfig(base, None, {})
    return ProjectConfig(start, None, {})


class Project:
    """What every command needs, computed on first use: the configuration, directory, prices."""

    def __init__(self, dir_arg: str | None) -> None:
        self.dir_arg = dir_arg

    @cached_property
    def config(self) -> ProjectConfig:
        return find_config(Path.cwd())

    @cached_property
    def directory(self) -> Path:
        if self.dir_arg:
            return Path(self.dir_arg).expanduser().resolve()
        raw = self.config.string("promptcache_dir") or DEFAULT_DIR
        return (self.config.rootdir / Path(raw).expanduser()).resolve()

    def existing_directory(self) -> Path:
        directory = self.directory
        if not directory.exists():
            raise CliError(
                f"no recordings directory at {directory}; record with pytest --promptcache=record, "
                "or pass --dir"
            )
        if not directory.is_dir():
            raise CliError(f"{directory} is not a directory; pass --dir with the recordings directory")
        return directory

    @cached_property
    def prices(self) -> PriceBook:
        try:
            return PriceBook(parse_prices(self.config.lines("promptcache_prices")))
        except PriceError as exc:
            raise CliError(f"{self.config.inifile}: {exc}") from None

    @cached_property
    def secret_patterns(self) -> list[tuple[re.Pattern[str], str]]:
        found: list[tuple[re.Pattern[str], str]] = []
        for pattern in (*DEFAULT_SECRET_PATTERNS, *self.config.lines("promptcache_secret_patterns")):
            try:
                found.append((re.compile(pattern), PATTERN_NAMES.get(pattern, f"the pattern {pattern!r}")))
            except re.error as exc:
                raise CliError(f"promptcache_secret_patterns: {pattern!r} is not a regex: {exc}") from None
        return found

    @cached_property
    def secret_headers(self) -> frozenset[str]:
        extra = self.config.lines("promptcache_secret_headers")
        return frozenset(h.lower() for h in (*DEFAULT_SECRET_HEADERS, *extra))

    @cached_property
    def secret_params(self) -> frozenset[str]:
        extra = self.config.lines("promptcache_secret_params")
        return frozenset(p.lower() for p in (*DEFAULT_SECRET_PARAMS, *extra))
