"""The project a command runs in: pytest's configuration, found without pytest, and the settings it makes.

The command never imports pytest (it must start fast and run where only the recordings and this package
are), so it reads the configuration files itself, in the order pytest looks for them, and hands the ini
values to the same ``build_settings`` the plugin uses.
"""

from __future__ import annotations

import configparser
import os
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from ..settings import Settings, SettingsError, build_settings
from ..usage import PriceBook


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
    """What the commands need, computed on first use: a command that needs none of it (prune of a bad
    report) fails on what it was given before the configuration can fail it."""

    def __init__(self, dir_arg: str | None) -> None:
        self.dir_arg = dir_arg

    @cached_property
    def config(self) -> ProjectConfig:
        return find_config(Path.cwd())

    @cached_property
    def settings(self) -> Settings:
        # --dir is a path typed in the current directory; the ini's promptcache_dir is relative to the
        # rootdir. Made absolute here, it stays what was typed when build_settings joins it to the rootdir.
        cli_dir = str(Path(self.dir_arg).expanduser().resolve()) if self.dir_arg else None
        try:
            return build_settings(
                rootdir=self.config.rootdir,
                cli_mode=None,
                cli_dir=cli_dir,
                env=os.environ,
                ini=self.config.ini,
            )
        except SettingsError as exc:
            raise CliError(str(exc)) from None

    @property
    def directory(self) -> Path:
        return self.settings.cassette_dir

    def existing_directory(self) -> Path:
        # A path that exists and is not a directory is already refused by build_settings.
        directory = self.directory
        if not directory.exists():
            raise CliError(
                f"no recordings directory at {directory}; record with pytest --promptcache=record, "
                "or pass --dir"
            )
        return directory

    @cached_property
    def prices(self) -> PriceBook:
        return PriceBook(self.settings.prices)
