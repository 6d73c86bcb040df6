"""``inversion-audit sample``: generate (or find cached) the synthetic sample cohort."""

from __future__ import annotations

import argparse

__all__ = ["register"]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sample", help="generate the synthetic sample cohort and print its path")
    p.add_argument("--out", default=None, help="output folder (default: the user cache)")
    p.add_argument("--n", type=int, default=40, help="number of subjects")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-skull", action="store_true", help="brain-only images (no scalp/skull shell)")
    p.set_defaults(handler=_sample)


def _sample(args: argparse.Namespace) -> int:
    from ..sample_data.synthetic import generate_sample_cohort

    path = generate_sample_cohort(args.out, n_subjects=args.n, seed=args.seed, with_skull=not args.no_skull)
    print(path)
    return 0
