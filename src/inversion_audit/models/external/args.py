"""Checking the ``arch_args`` an external model records in a decoder's sidecar (torch-free).

A sidecar may come from elsewhere; these fields size the decoder, so each is typed and
bounded before anything is built. Errors are :class:`ConfigError` naming the key.
"""

from __future__ import annotations

import re
from typing import Any

from ...errors import ConfigError

__all__ = ["check_external_args", "check_literal"]

SOURCES = ("monai", "bundle", "nnunet")
NORMALIZATIONS = ("none", "zscore", "zscore-mask")
_MODULE = re.compile(r"[A-Za-z0-9_]{1,64}(\.[A-Za-z0-9_]{1,64}){0,32}")
_HEX = re.compile(r"[0-9a-f]{1,64}")
MAX_SIDE, MAX_CHANNELS, MAX_SKIPS = 1024, 8192, 16
_LITERALS = (bool, int, float, str, type(None))


def check_literal(value: Any, where: str) -> Any:
    """Return ``value`` if it is plain data (numbers, strings, booleans, null, lists, tables).

    Strings that MONAI's config parser would evaluate (``$`` expressions, ``@`` references,
    ``%`` macros) and ``_target_`` entries (objects to build) raise :class:`ConfigError`
    naming ``where``.
    """
    if isinstance(value, str):
        if value[:1] in ("$", "@", "%"):
            kind = {"$": "a Python expression", "@": "a reference", "%": "a macro"}[value[0]]
            raise ConfigError(
                f"{where}: {value[:40]!r} is {kind}; only literal values are accepted"
            )
        return value
    if isinstance(value, _LITERALS):
        return value
    if isinstance(value, (list, tuple)):
        return [check_literal(v, f"{where}[{k}]") for k, v in enumerate(value)]
    if isinstance(value, dict):
        for key in value:
            if not isinstance(key, str) or key in (
                "_target_",
                "_requires_",
                "_disabled_",
                "_mode_",
            ):
                raise ConfigError(
                    f"{where}: key {key!r} would build objects; only literal values are accepted"
                )
        return {key: check_literal(v, f"{where}.{key}") for key, v in value.items()}
    raise ConfigError(f"{where}: {type(value).__name__} is not a literal value")


def _ints(value: Any, n: int, low: int, high: int, where: str) -> list[int]:
    if (
        not isinstance(value, list)
        or len(value) != n
        or not all(
            isinstance(v, int) and not isinstance(v, bool) and low <= v <= high for v in value
        )
    ):
        raise ConfigError(f"{where} must be {n} integers in {low}..{high}")
    return value


def check_external_args(args: Any, where: str) -> None:
    """Raise :class:`ConfigError` unless ``args`` is a well-formed external model record."""
    if not isinstance(args, dict):
        raise ConfigError(f"{where} must be a table")
    if args.get("source") not in SOURCES:
        raise ConfigError(f"{where}.source must be one of {', '.join(SOURCES)}")
    for key in ("network", "weights_file"):
        if not isinstance(args.get(key), str) or not 0 < len(args[key]) <= 200:
            raise ConfigError(f"{where}.{key} must be a short name")
    if not isinstance(args.get("weights_sha256"), str) or not _HEX.fullmatch(
        args["weights_sha256"]
    ):
        raise ConfigError(f"{where}.weights_sha256 must be a hexadecimal hash")
    if not isinstance(args.get("in_channels"), int) or not 1 <= args["in_channels"] <= 16:
        raise ConfigError(f"{where}.in_channels must be an integer in 1..16")
    _ints(args.get("grid"), 3, 1, MAX_SIDE, f"{where}.grid")
    if sorted(_ints(args.get("axes", [0, 1, 2]), 3, 0, 2, f"{where}.axes")) != [0, 1, 2]:
        raise ConfigError(f"{where}.axes must be a permutation of 0, 1, 2")
    if args.get("normalization", "none") not in NORMALIZATIONS:
        raise ConfigError(f"{where}.normalization must be one of {', '.join(NORMALIZATIONS)}")
    lat = args.get("latent")
    if not isinstance(lat, dict):
        raise ConfigError(f"{where}.latent must be a table")
    skips, shapes = lat.get("skips", []), lat.get("skip_shapes", [])
    if not isinstance(skips, list) or not isinstance(shapes, list) or len(skips) != len(shapes):
        raise ConfigError(f"{where}.latent.skips and skip_shapes must be lists of one length")
    if len(skips) > MAX_SKIPS:
        raise ConfigError(f"{where}.latent lists more than {MAX_SKIPS} skips")
    for name in [lat.get("module"), *skips]:
        if not isinstance(name, str) or not _MODULE.fullmatch(name):
            raise ConfigError(f"{where}.latent: {str(name)[:80]!r} is not a module path")
    _ints(lat.get("shape"), 4, 1, MAX_CHANNELS, f"{where}.latent.shape")
    if "network_args" in args:
        if not isinstance(args["network_args"], dict):
            raise ConfigError(f"{where}.network_args must be a table")
        check_literal(args["network_args"], f"{where}.network_args")
    fold = args.get("fold", 0)
    if fold != "all" and (
        not isinstance(fold, int) or isinstance(fold, bool) or not 0 <= fold <= 99
    ):
        raise ConfigError(f"{where}.fold must be an integer in 0..99 or 'all'")
    for k, shape in enumerate(shapes):
        _ints(shape, 4, 1, MAX_CHANNELS, f"{where}.latent.skip_shapes[{k}]")
