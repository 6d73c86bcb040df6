"""Type checks of a study config's TOML tables against their dataclass annotations."""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any

from ..errors import ConfigError

__all__ = ["check_type", "check_bounded", "build_section", "type_ok"]

_TYPE_NAMES = {bool: "a boolean", int: "an integer", float: "a number", str: "a string"}


def type_ok(value: Any, tp: Any) -> bool:
    """Whether a TOML value fits a field annotation (ints are not bools; floats accept ints)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return any(type_ok(value, arg) for arg in typing.get_args(tp))
    if tp is type(None):
        return value is None
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if origin is list:
        (item,) = typing.get_args(tp) or (Any,)
        return isinstance(value, list) and all(type_ok(v, item) for v in value)
    if tp is dict or origin is dict:
        return isinstance(value, dict)
    if tp is Any:
        return True
    return isinstance(value, tp)


def _type_name(tp: Any) -> str:
    """Readable name of a field annotation (``None`` left out: TOML has no null)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp) if a is not type(None))
    if origin is list:
        args = typing.get_args(tp)
        item = _type_name(args[0]) if args else "a value"
        plural = {"a boolean": "booleans", "an integer": "integers", "a number": "numbers"}
        return f"a list of {plural.get(item, item.split(' ', 1)[-1] + 's')}"
    if tp is dict or origin is dict:
        return "a table"
    return _TYPE_NAMES.get(tp, getattr(tp, "__name__", str(tp)))


def check_type(value: Any, tp: Any, where: str) -> None:
    """Raise :class:`ConfigError` ``<where> must be <type>, got <value!r>`` on a mismatch."""
    if not type_ok(value, tp):
        raise ConfigError(f"{where} must be {_type_name(tp)}, got {value!r}")


def check_bounded(name: str, value: int | None, low: int, high: int) -> None:
    """``None`` or an integer in ``low..high`` (types were checked against the annotations)."""
    if value is not None and not low <= value <= high:
        shown = value if abs(value) < 10**30 else "a huge integer"
        raise ConfigError(f"{name} must be in {low}..{high}, got {shown}")


def build_section(cls: type, data: Any, name: str) -> Any:
    """Build section dataclass ``cls`` from a TOML table, checking keys and value types."""
    if not isinstance(data, dict):
        raise ConfigError(f"[{name}] must be a table, got {type(data).__name__}")
    names = {f.name for f in dataclasses.fields(cls)}
    for key in data:
        if key not in names:
            raise ConfigError(f"unknown key '{name}.{key}' (allowed: {', '.join(sorted(names))})")
    hints = typing.get_type_hints(cls)
    for key, value in data.items():
        check_type(value, hints[key], f"{name}.{key}")
    try:
        return cls(**data)
    except TypeError as exc:
        raise ConfigError(f"[{name}]: {exc}") from exc
