"""Preprocess all ixi-dev subjects and time it against plain NIfTI reading (reference).

Usage: .venv/bin/python benchmarks/bench_preprocess.py [--n 60] [--n4]
"""

from __future__ import annotations

import argparse
import os
import tempfile

import numpy as np
from _common import IXI_DEV, Timer, peak_rss_mb, print_table, write_results

from inversion_audit.data import PreprocessConfig, load_cohort, preprocess_subject
from inversion_audit.io import read_labels, read_volume


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=60)
    ap.add_argument("--n4", action="store_true", help="also time N4 bias-field correction")
    args = ap.parse_args()
    os.environ["INVERSION_AUDIT_CACHE"] = tempfile.mkdtemp(prefix="bench-pre-")
    subjects = load_cohort(IXI_DEV).subjects[: args.n]

    with Timer() as t_read:
        for s in subjects:
            read_volume(s.image)
            read_labels(s.labels)
    configs = {
        "skull-stripped": PreprocessConfig(
            skull_strip="labels", shape=(96, 112, 96), bias_correction=False
        ),
        "with-skull": PreprocessConfig(
            skull_strip="none", shape=(112, 144, 128), bias_correction=False
        ),
    }
    if args.n4:
        configs["skull-stripped+N4"] = PreprocessConfig(
            skull_strip="labels", shape=(96, 112, 96), bias_correction=True
        )
    rows = [
        {
            "step": "read image+labels (reference)",
            "seconds": t_read.seconds,
            "s/subject": t_read.seconds / len(subjects),
            "ratio": 1.0,
        }
    ]
    for name, cfg in configs.items():
        with Timer() as t:
            pres = [preprocess_subject(s, cfg, use_cache=False) for s in subjects]
        with Timer() as t_cached:
            for s in subjects:
                preprocess_subject(s, cfg)
        with Timer() as t_hit:
            for s in subjects:
                preprocess_subject(s, cfg)
        clipped = float(
            np.mean(
                [
                    p.mask[[0, -1]].any() or p.mask[:, [0, -1]].any() or p.mask[:, :, [0, -1]].any()
                    for p in pres
                ]
            )
        )
        rows.append(
            {
                "step": f"preprocess {name}",
                "seconds": t.seconds,
                "s/subject": t.seconds / len(subjects),
                "ratio": t.seconds / t_read.seconds,
                "mask touches border": clipped,
            }
        )
        rows.append(
            {
                "step": f"cache hit {name}",
                "seconds": t_hit.seconds,
                "s/subject": t_hit.seconds / len(subjects),
                "ratio": t_hit.seconds / t_read.seconds,
            }
        )
        del t_cached
    print_table(rows, ["step", "seconds", "s/subject", "ratio"])
    write_results(
        "preprocess", {"n_subjects": len(subjects), "rows": rows, "peak_rss_mb": peak_rss_mb()}
    )


if __name__ == "__main__":
    main()
