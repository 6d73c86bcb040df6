"""Checking a file's keyword arguments against the signature of the allowed class they build.

Each argument must be a parameter of the class (a class taking ``**kwargs`` takes only the
arguments it names) and a literal of a type the parameter's annotation allows: numbers,
booleans, null, lists, tables with name keys, short strings without path separators.
Classes (an nnU-Net ``conv_op``) come from the tables in :mod:`.tables`, never from a
string. Errors are :class:`ConfigError` naming the file and key (``where``).
"""

from __future__ import annotations

import collections.abc
import enum
import inspect
import re
import types
import typing
from typing import Any

from ...errors import ConfigError

__all__ = ["check_arguments", "check_plain", "signature_of"]

MAX_STRING, MAX_ITEMS, MAX_DEPTH = 64, 256, 6
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}")
_SEQUENCES = (list, tuple, collections.abc.Sequence, typing.List, typing.Tuple, typing.Sequence)  # noqa: UP006
_MAPPINGS = (dict, collections.abc.Mapping, typing.Dict, typing.Mapping)  # noqa: UP006


def _kind(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "str"
    if isinstance(value, (list, tuple)):
        return "list"
    if isinstance(value, dict):
        return "dict"
    return "class" if isinstance(value, type) else "other"


def check_plain(value: Any, where: str, depth: int = 0) -> Any:
    """``value`` if it is plain data: numbers, booleans, null, short strings, lists, name-keyed tables.

    A string longer than 64 characters or holding a path separator, a table key that is
    not a plain name (``__globals__`` included), anything nested deeper than 6 levels or
    longer than 256 items raises :class:`ConfigError` naming ``where``.
    """
    kind = _kind(value)
    if kind == "str":
        if len(value) > MAX_STRING or any(c in value for c in "/\\\0") or not value.isprintable():
            raise ConfigError(
                f"{where}: {value[:40]!r} is not a short name (at most {MAX_STRING} printable "
                "characters, no path separators)"
            )
        return value
    if kind in ("none", "bool", "int", "float"):
        return value
    if kind in ("list", "dict") and (depth >= MAX_DEPTH or len(value) > MAX_ITEMS):
        raise ConfigError(f"{where}: nested deeper than {MAX_DEPTH} or longer than {MAX_ITEMS}")
    if kind == "list":
        return [check_plain(v, f"{where}[{k}]", depth + 1) for k, v in enumerate(value)]
    if kind == "dict":
        out = {}
        for key, v in value.items():
            if not isinstance(key, str) or not _NAME.fullmatch(key):
                raise ConfigError(f"{where}: key {ascii(key)[:60]} is not a plain argument name")
            out[key] = check_plain(v, f"{where}.{key}", depth + 1)
        return out
    raise ConfigError(f"{where}: {type(value).__name__} is not a literal value")


def _kinds(annotation: Any) -> set[str] | None:
    """The value kinds an annotation allows (``None``: any plain literal)."""
    if annotation is inspect.Parameter.empty or annotation is Any or isinstance(annotation, str):
        return None
    if annotation is None or annotation is type(None):
        return {"none"}
    simple = {bool: "bool", int: "int", float: "float", str: "str"}
    if annotation in simple:
        return {"int", "float"} if annotation is float else {simple[annotation]}
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        out: set[str] = set()
        for arg in typing.get_args(annotation):
            sub = _kinds(arg)
            if sub is None:
                return None
            out |= sub
        return out
    if annotation in _SEQUENCES or origin in _SEQUENCES:
        return {"list"}
    if annotation in _MAPPINGS or origin in _MAPPINGS:
        return {"dict"}
    if origin is type or annotation is type:
        return {"class"}
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return {"str"}
    if isinstance(annotation, type):
        return {"class"}  # a module instance (nn.Module) or the like: never a literal
    return None


def signature_of(cls: type) -> inspect.Signature:
    """The class's signature, annotations evaluated where they can be."""
    try:
        return inspect.signature(cls, eval_str=True)
    except (NameError, TypeError, SyntaxError, AttributeError):
        return inspect.signature(cls)


def check_arguments(
    cls: type,
    kwargs: dict[str, Any],
    where: str,
    *,
    classes: dict[str, Any] | None = None,
    set_by_us: tuple[str, ...] = (),
    removed: tuple[str, ...] = (),
) -> tuple[dict[str, Any], tuple[str, ...]]:
    """``(arguments, dropped)``: ``kwargs`` checked against ``cls``'s signature.

    ``classes`` are arguments already resolved from a table (they pass as classes);
    ``set_by_us`` are the parameters the caller sets itself (refused in the file);
    ``removed`` are the known arguments that older versions of the class took: when the
    installed class no longer takes one it is dropped and named in ``dropped``.
    """
    classes = classes or {}
    name = cls.__name__
    params = signature_of(cls).parameters
    named = {
        k: p
        for k, p in params.items()
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and k != "self"
    }
    out: dict[str, Any] = {}
    dropped = []
    for key, value in kwargs.items():
        at = f"{where}.{key}"
        if not isinstance(key, str) or not _NAME.fullmatch(key):
            raise ConfigError(f"{where}: key {ascii(key)[:60]} is not a plain argument name")
        if key in set_by_us:
            raise ConfigError(f"{at}: set from the model's own files, not from this key")
        if key not in named:
            if key in removed:
                dropped.append(key)
                continue
            raise ConfigError(f"{at}: {name} takes no argument {key!r}")
        param = named[key]
        kinds = _kinds(param.annotation)
        if kinds is not None and param.default is None:
            kinds = kinds | {"none"}
        if key in classes:
            if kinds is not None and "class" not in kinds and value is not None:
                raise ConfigError(f"{at}: {name} does not take a class for {key!r}")
            out[key] = value
            continue
        value = check_plain(value, at)
        kind = _kind(value)
        if kinds is not None and kind not in kinds and not (kind == "int" and "float" in kinds):
            if kinds == {"class"} or kinds == {"class", "none"}:
                raise ConfigError(f"{at}: {name} takes a class here, not {value!r}")
            allowed = ", ".join(sorted(k for k in kinds if k != "class"))
            raise ConfigError(
                f"{at}: {name} expects {allowed or 'a class'} for {key!r}, not {kind} {value!r}"[
                    :300
                ]
            )
        out[key] = value
    return out, tuple(dropped)
