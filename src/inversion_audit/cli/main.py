"""Entry point: ``inversion-audit <command> ...``.

Each command lives in its own module exposing ``register(subparsers)``; the
registered handler returns an exit code.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from .. import __version__
from ..errors import InversionAuditError

__all__ = ["main", "build_parser"]

#: command modules, each with ``register(subparsers)``
COMMAND_MODULES = [
    "inversion_audit.cli.cohort_cmd",
    "inversion_audit.cli.sample_cmd",
    "inversion_audit.cli.run_cmd",
    "inversion_audit.cli.reader_study_cmd",
    "inversion_audit.cli.train_cmd",
    "inversion_audit.cli.inversion_cmd",
    "inversion_audit.cli.match_cmd",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="inversion-audit", description="Model inversion audits of 3D segmentation networks."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    try:
        return int(args.handler(args) or 0)
    except InversionAuditError as exc:
        print(f"inversion-audit: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("inversion-audit: cancelled", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
