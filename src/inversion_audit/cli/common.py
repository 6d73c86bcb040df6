"""Argument helpers shared by CLI commands."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..devices import DEVICES

if TYPE_CHECKING:
    from ..attack_pair import TargetSpec
    from ..data import Cohort, Subject

__all__ = [
    "add_device_args",
    "add_preprocess_args",
    "add_quiet_arg",
    "add_target_args",
    "check_subjects",
    "cohort_subjects",
    "fail",
    "load_cohort_arg",
    "preprocess_table",
    "read_table_file",
    "split_ids",
    "setup_logging",
    "target_spec",
]

#: the longest ``--network-args`` accepted inline
MAX_INLINE_ARGS = 64 * 2**10


def add_device_args(parser: argparse.ArgumentParser) -> None:
    """``--device auto|cpu|cuda|mps`` and ``--threads N``."""
    parser.add_argument(
        "--device",
        default="auto",
        choices=list(DEVICES),
        help="compute device (auto: cuda, then mps, then cpu)",
    )
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch")


def add_quiet_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quiet", action="store_true", help="no progress bars (for CI)")


def split_ids(values: list[str] | None) -> list[str] | None:
    """Accept ``--subjects a b c`` and ``--subjects a,b,c``."""
    if not values:
        return None
    out: list[str] = []
    for v in values:
        out.extend(x for x in v.split(",") if x)
    return out


def fail(message: str, code: int = 2) -> int:
    print(f"inversion-audit: error: {message}", file=sys.stderr)
    return code


def setup_logging(quiet: bool = False) -> None:
    logging.basicConfig(
        level=logging.WARNING if quiet else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )


def load_cohort_arg(path: str, image_pattern: str, labels_pattern: str) -> Cohort:
    """The cohort a command-line argument names: a folder, a CSV manifest, ``sample`` or
    ``sample:N`` (the synthetic sample cohort, see
    :func:`~inversion_audit.sample_data.resolve_cohort_path`). Every command's cohort
    argument goes through here."""
    from ..data import load_cohort
    from ..sample_data import resolve_cohort_path

    return load_cohort(resolve_cohort_path(path), image_pattern, labels_pattern)


def check_subjects(
    subjects: list[Subject],
    skull_strip: str,
    where: str | os.PathLike[str],
    require_labels: bool = False,
) -> None:
    """Refuse, before a command writes anything, subjects it could not finish: every file is
    opened (header and voxels) and each subject must have what ``skull_strip`` needs (labels
    or a mask). Raises :class:`~inversion_audit.errors.CohortError` naming ``where`` and each
    bad file."""
    from ..data.cohort import require_valid
    from ..errors import CohortError

    if skull_strip == "mask":
        no_mask = [s.id for s in subjects if s.mask is None]
        if no_mask:
            raise CohortError(f"{where}: skull_strip='mask' but no mask for {', '.join(no_mask)}")
    require_valid(subjects, require_labels=require_labels or skull_strip == "labels", where=where)


def cohort_subjects(args: argparse.Namespace) -> list[Subject]:
    """The subjects ``--cohort`` and ``--subjects`` name (default: the whole cohort)."""
    cohort = load_cohort_arg(args.cohort, args.image_pattern, args.labels_pattern)
    ids = split_ids(args.subjects) or cohort.ids
    return [cohort[i] for i in ids]


def read_table_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A TOML or JSON file holding a table (read as untrusted input); ConfigError naming it."""
    from ..errors import ConfigError
    from ..io.untrusted import read_json, read_toml

    p = Path(path)
    if p.suffix == ".toml":
        return read_toml(p, ConfigError, "config")
    data = read_json(p, ConfigError, "config")
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: expected a JSON object, got {type(data).__name__}")
    return data


def add_preprocess_args(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """``--spacing``, ``--shape``, ``--skull-strip``, ``--intensity``, ``--bias-correction``."""
    parser.add_argument("--spacing", type=float, nargs="+", help="voxel size in mm (1 or 3 values)")
    parser.add_argument(
        "--shape", type=int, nargs=3, help="preprocessed grid size (default: fits every subject)"
    )
    parser.add_argument("--skull-strip", choices=["none", "labels", "mask"])
    parser.add_argument("--intensity", choices=["percentile", "nyul", "none"])
    parser.add_argument(
        "--bias-correction",
        action=argparse.BooleanOptionalAction,
        help="N4 with ANTs (default: on)",
    )


#: the preprocessing flags of :func:`add_preprocess_args`, as their ``args`` attributes
PREPROCESS_FLAGS = ("spacing", "shape", "skull_strip", "intensity", "bias_correction")


def preprocess_table(args: argparse.Namespace, table: dict[str, Any]) -> dict[str, Any]:
    """A ``[preprocess]`` table with the preprocessing flags given applied over it."""
    data = dict(table)
    if args.spacing:
        data["spacing"] = tuple(args.spacing) if len(args.spacing) == 3 else (args.spacing[0],) * 3
    if args.shape:
        data["shape"] = tuple(args.shape)
    for flag in ("skull_strip", "intensity", "bias_correction"):
        if getattr(args, flag) is not None:
            data[flag] = getattr(args, flag)
    return data


def _fold(value: str) -> int | str:
    if value == "all":
        return value
    try:
        fold = int(value)
    except ValueError:
        fold = -1
    if not 0 <= fold <= 99:
        raise argparse.ArgumentTypeError(f"expected 0..99 or 'all', got {value!r}")
    return fold


def add_target_args(parser: argparse.ArgumentParser, with_latent: bool = True) -> None:
    """``--target`` (any source) with ``--network``, ``--network-args``, ``--fold`` (and ``--latent``)."""
    parser.add_argument(
        "--target",
        required=True,
        help="target model: a checkpoint (.safetensors with .json sidecar), MONAI weights "
        "(with --network), a MONAI bundle folder or an nnU-Net trained model folder",
    )
    parser.add_argument("--network", help="MONAI weights: the network class, e.g. BasicUNet")
    parser.add_argument(
        "--network-args",
        metavar="JSON|FILE",
        help="MONAI weights: the network's arguments, a JSON object or a .json/.toml file",
    )
    parser.add_argument(
        "--fold", type=_fold, help="nnU-Net folder: the fold to load, 0..99 or 'all' (default 0)"
    )
    if with_latent:
        parser.add_argument(
            "--latent", help="external model: the module whose output is the latent (default: auto)"
        )


def _network_args(value: str) -> dict[str, Any]:
    """``--network-args``: a file, or an inline JSON object of literal values."""
    import json

    from ..errors import ConfigError
    from ..io.untrusted import MAX_NESTING, nesting_depth
    from ..models.external.args import check_literal

    if Path(value).suffix in (".json", ".toml") and Path(value).is_file():
        data: Any = read_table_file(value)
        where = f"--network-args {value}"
    else:
        where = "--network-args"
        if len(value) > MAX_INLINE_ARGS or nesting_depth(value) > MAX_NESTING:
            raise ConfigError(f"{where}: too long or too deeply nested")
        try:
            data = json.loads(value)
        except ValueError as exc:
            raise ConfigError(f"{where}: not a JSON object or a .json/.toml file ({exc})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a JSON object, got {type(data).__name__}")
    return check_literal(data, where)


def target_spec(args: argparse.Namespace) -> TargetSpec:
    """The target the ``--target`` flags name."""
    from ..attack_pair import TargetSpec

    return TargetSpec(
        Path(args.target).expanduser(),
        network=args.network,
        network_args=_network_args(args.network_args) if args.network_args else None,
        fold=args.fold,
        latent=getattr(args, "latent", None),
    )
