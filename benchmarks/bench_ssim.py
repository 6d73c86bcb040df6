"""Batched SSIM matrix (torch) vs a loop over scikit-image's structural_similarity, same run.

40 reconstructions x 40 candidates of 96x112x96 voxels: the candidates are ixi-dev
subjects preprocessed (skull-stripped, 2 mm); the reconstructions are stand-ins
(the same volumes blurred and with noise added).

Usage: .venv/bin/python benchmarks/bench_ssim.py [--n 40] [--skimage-pairs 0] [--threads 2]

``--skimage-pairs K`` times only K evenly spread pairs with scikit-image and
extrapolates to all pairs (the JSON and table say so); 0 runs every pair.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
from _common import IXI_DEV, Timer, peak_rss_mb, print_table, write_results
from scipy.ndimage import gaussian_filter
from skimage.metrics import structural_similarity

from inversion_audit.data import PreprocessConfig, load_cohort, preprocess_subject
from inversion_audit.metrics import ssim_matrix

SHAPE = (96, 112, 96)


def stand_in(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A stand-in reconstruction: blurred (sigma 1.5 voxels) with Gaussian noise (sd 0.05)."""
    return np.clip(gaussian_filter(image, 1.5) + rng.normal(0, 0.05, image.shape), 0, 1).astype(
        np.float32
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=40)
    ap.add_argument("--skimage-pairs", type=int, default=0, help="0: all pairs")
    ap.add_argument("--threads", type=int, default=2, help="torch threads")
    ap.add_argument("--budget-mb", type=float, default=1024.0)
    args = ap.parse_args()
    import torch

    subjects = load_cohort(IXI_DEV).subjects[: args.n]
    config = PreprocessConfig(skull_strip="labels", shape=SHAPE, bias_correction=False)
    cand = np.stack([preprocess_subject(s, config).image for s in subjects])
    rng = np.random.default_rng(0)
    rec = np.stack([stand_in(c, rng) for c in cand])
    n = len(rec)
    load = os.getloadavg()[0]

    rows = []
    results: dict[str, float | int | str] = {}
    timings = {}
    for threads in sorted({args.threads, 1}, reverse=True):
        torch.set_num_threads(threads)
        with Timer() as t:
            matrix = ssim_matrix(
                rec, cand, data_range=1.0, device="cpu", memory_budget_mb=args.budget_mb
            )
        timings[threads] = (t.seconds, matrix)

    pairs = [(i, j) for i in range(n) for j in range(n)]
    if args.skimage_pairs and args.skimage_pairs < len(pairs):
        pick = np.linspace(0, len(pairs) - 1, args.skimage_pairs).round().astype(int)
        pairs = [pairs[k] for k in pick]
    ref = np.full((n, n), np.nan)
    start = time.perf_counter()
    for i, j in pairs:
        ref[i, j] = structural_similarity(
            rec[i],
            cand[j],
            data_range=1.0,
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
        )
    t_sk = time.perf_counter() - start
    extrapolated = len(pairs) < n * n
    t_sk_all = t_sk / len(pairs) * n * n
    done = np.isfinite(ref)

    rows.append(
        {
            "method": "skimage structural_similarity loop (reference)"
            + (f", {len(pairs)} pairs timed, extrapolated" if extrapolated else ""),
            "threads": 1,
            "seconds": t_sk_all,
            "ms/pair": 1000 * t_sk / len(pairs),
            "speed-up": 1.0,
            "max |diff|": 0.0,
        }
    )
    for threads, (seconds, matrix) in timings.items():
        diff = float(np.abs(matrix[done] - ref[done]).max())
        rows.append(
            {
                "method": "ssim_matrix (torch CPU)",
                "threads": threads,
                "seconds": seconds,
                "ms/pair": 1000 * seconds / (n * n),
                "speed-up": t_sk_all / seconds,
                "max |diff|": diff,
            }
        )
        results[f"ssim_matrix_seconds_{threads}t"] = seconds
        results[f"speedup_{threads}t"] = t_sk_all / seconds
        results[f"max_abs_diff_{threads}t"] = diff
    print_table(rows)
    own = np.diag(timings[args.threads][1])
    others = timings[args.threads][1][~np.eye(n, dtype=bool)]
    print(
        f"stand-ins: SSIM own {own.mean():.3f}, others {others.mean():.3f}; load average at start {load:.1f}"
    )
    write_results(
        "ssim_matrix",
        {
            "n": n,
            "shape": SHAPE,
            "skimage_pairs_timed": len(pairs),
            "skimage_extrapolated": extrapolated,
            "skimage_seconds_all_pairs": t_sk_all,
            "torch_threads": args.threads,
            "memory_budget_mb": args.budget_mb,
            "peak_rss_mb": peak_rss_mb(),
            "load_average_at_start": load,
            "rows": rows,
            **results,
        },
    )


if __name__ == "__main__":
    main()
