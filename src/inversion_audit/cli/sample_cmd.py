"""``inversion-audit sample``: generate (or find cached) the synthetic sample cohort."""

from __future__ import annotations

import argparse

from .common import add_quiet_arg

__all__ = ["register"]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "sample",
        help="generate the synthetic sample cohort (cached) and print its folder",
        description="Write the MNI152-derived synthetic cohort (<id>_T1/_seg/_mask.nii.gz) and print "
        "its folder. Without --out it is cached in the user cache folder and reused. "
        "Commands taking a cohort path also accept 'sample' or 'sample:N'.",
    )
    p.add_argument("--out", default=None, help="output folder (default: the user cache)")
    p.add_argument("--n", type=int, default=40, help="number of subjects (default 40)")
    p.add_argument("--seed", type=int, default=0, help="cohort seed (default 0)")
    p.add_argument("--spacing", type=float, default=2.0, help="voxel size in mm (default 2)")
    p.add_argument(
        "--no-skull", action="store_true", help="brain-only images (no scalp/skull shell)"
    )
    add_quiet_arg(p)
    p.set_defaults(handler=_sample)


def _sample(args: argparse.Namespace) -> int:
    from ..progress import tqdm_progress
    from ..sample_data import generate_sample_cohort

    with tqdm_progress(args.quiet) as progress:
        path = generate_sample_cohort(
            args.out,
            n_subjects=args.n,
            seed=args.seed,
            spacing=args.spacing,
            with_skull=not args.no_skull,
            progress=progress,
        )
    print(path)
    return 0
