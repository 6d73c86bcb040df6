"""``inversion-audit cohort check PATH``: validate a cohort and print a table."""

from __future__ import annotations

import argparse

from ..data import validate_cohort
from .common import load_cohort_arg

__all__ = ["register"]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("cohort", help="inspect and validate cohorts")
    csub = p.add_subparsers(dest="cohort_command", metavar="ACTION")
    check = csub.add_parser("check", help="validate every subject's files; exit 1 on errors")
    check.add_argument(
        "path", help="cohort folder, CSV manifest, or 'sample' for the bundled sample cohort"
    )
    check.add_argument("--image-pattern", default="{id}_T1.nii.gz")
    check.add_argument("--labels-pattern", default="{id}_seg.nii.gz")
    check.add_argument("--require-labels", action="store_true")
    check.set_defaults(handler=_check)


def _check(args: argparse.Namespace) -> int:
    cohort = load_cohort_arg(args.path, args.image_pattern, args.labels_pattern)
    issues = validate_cohort(cohort, require_labels=args.require_labels)
    bad = {i.subject for i in issues}
    width = max(len(s.id) for s in cohort)
    print(f"{'subject':<{width}}  labels  status")
    for s in cohort:
        status = "ok" if s.id not in bad else "ERROR"
        print(f"{s.id:<{width}}  {'yes' if s.labels else 'no ':<6}  {status}")
    for issue in issues:
        print(f"ERROR {issue}")
    n_valid = len(cohort) - len(bad)
    print(f"{n_valid} valid subjects, {len(bad)} with errors, in {args.path}")
    return 1 if issues else 0
