"""What ``@pytest.mark.promptcache(...)`` may set for one test, validated like the ini options."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from .choices import SCOPES, ChoiceError, parse_choice
from .rules import KeyRules, RuleError
from .settings import Mode, SettingsError, parse_mode


@dataclass(frozen=True)
class TestOptions:
    """What ``@pytest.mark.promptcache(...)`` may set for one test."""

    __test__ = False  # not a test class, whatever pytest's collector thinks of the name

    mode: Mode | None = None
    normalize: tuple[str, ...] = ()
    ignore_fields: tuple[str, ...] = ()
    # "session" or "test" (ordered.py); None: the ini's.
    scope: str | None = None

    @classmethod
    def from_marker(cls, args: tuple[Any, ...], kwargs: Mapping[str, Any], where: str) -> TestOptions:
        names = [f.name for f in fields(cls)]
        valid = ", ".join(names)
        if args:
            raise SettingsError(
                f"{where}: @pytest.mark.promptcache takes keyword arguments only ({valid}), got {args!r}"
            )
        unknown = sorted(set(kwargs) - set(names))
        if unknown:
            raise SettingsError(
                f"{where}: @pytest.mark.promptcache got unknown argument(s) {', '.join(unknown)}; "
                f"valid ones are: {valid}"
            )
        mode = kwargs.get("mode")
        if mode is not None and not isinstance(mode, Mode):
            mode = parse_mode(str(mode), f"{where}: @pytest.mark.promptcache(mode=...)")
        scope = kwargs.get("scope")
        if scope is not None:
            try:
                scope = parse_choice(scope, f"{where}: @pytest.mark.promptcache(scope=...)", SCOPES)
            except ChoiceError as exc:
                raise SettingsError(str(exc)) from None
        lists: dict[str, tuple[str, ...]] = {}
        for name in ("normalize", "ignore_fields"):
            value = kwargs.get(name, ())
            if isinstance(value, str):
                value = (value,)
            if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
                raise SettingsError(f"{where}: @pytest.mark.promptcache({name}=...) takes a list of strings")
            lists[name] = tuple(value)
        try:
            KeyRules.build(lists["ignore_fields"], lists["normalize"])
        except RuleError as exc:
            raise SettingsError(f"{where}: @pytest.mark.promptcache: {exc}") from None
        return cls(mode=mode, scope=scope, **lists)
