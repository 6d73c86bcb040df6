"""ANTs deformation metric: seconds per pair (paper vs fast), top-k vs all pairs, preset agreement.

10 stand-in reconstructions (ixi-dev subjects preprocessed skull-stripped at 2 mm,
blurred and with noise added) are matched against 40 candidates (the first 40
subjects, which include the 10 true originals). SSIM selects each
reconstruction's top-5 candidates; both presets register exactly those 50 pairs
on a Dask LocalCluster (one single-threaded worker process per core). The
all-pairs wall time (400 pairs) is extrapolated from the measured seconds per
pair; the table says so.

With ``--attack DIR`` (the checkpoints that ``bench_ixi_fold.py --work DIR`` trained, in
``DIR/unet_bottleneck``) the reconstructions are real: the inversion decoder's
reconstructions of fold 0's 10 private subjects, preprocessed as its sidecar records.

Usage: .venv/bin/python benchmarks/bench_deformation.py [--workers 2] [--presets fast,paper]
       [--attack /tmp/ixi-fold/unet_bottleneck]
       [--paper-recon N]   (the slow 'paper' preset on the first N reconstructions only)
       [--cache DIR]   (reuse a cache to resume an interrupted run; wall times then are not valid)
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np
from _common import IXI_DEV, Timer, print_table, write_results
from bench_ssim import stand_in

from inversion_audit.data import PreprocessConfig, load_cohort, preprocess_subject
from inversion_audit.io import Volume
from inversion_audit.matching import ScoreMatrix, rank_of_true_match, top_k_mask
from inversion_audit.metrics import deformation, ssim_matrix
from inversion_audit.metrics.deformation import centred_affine


def real_reconstructions(folder, cand_ids, pres, decoder) -> tuple[list[str], np.ndarray]:
    """The decoder's reconstructions of fold 0's private subjects (``kfold_split(ids, 4, seed=0)``)."""
    from inversion_audit.attack import reconstruct
    from inversion_audit.checkpoints import load_target
    from inversion_audit.data import kfold_split

    target = load_target(os.path.join(folder, "target.safetensors"))
    private = list(kfold_split(cand_ids, 4, seed=0)[0].private_set)
    by_id = {p.subject_id: p for p in pres}
    recs = [reconstruct(target, decoder, by_id[s].image, device="cpu") for s in private]
    return private, np.stack(recs)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n-recon", type=int, default=10)
    ap.add_argument("--n-cand", type=int, default=40)
    ap.add_argument("--top-k", type=int, default=5)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--shape", type=int, nargs=3, default=(80, 112, 80))
    ap.add_argument("--presets", default="fast,paper")
    ap.add_argument("--cache", default=None, help="deformation cache folder (default: a fresh one)")
    ap.add_argument(
        "--paper-recon",
        type=int,
        default=None,
        help="run 'paper' on the first N reconstructions only",
    )
    ap.add_argument(
        "--attack",
        default=None,
        help="folder with target/inversion checkpoints: real reconstructions of fold 0's private set",
    )
    args = ap.parse_args()
    from inversion_audit.matching.distributed import deformation_matrix

    config = PreprocessConfig(skull_strip="labels", shape=tuple(args.shape), bias_correction=False)
    cohort = load_cohort(IXI_DEV)
    if args.attack:
        from inversion_audit.checkpoints import load_inversion

        decoder = load_inversion(os.path.join(args.attack, "inversion.safetensors"))
        config = PreprocessConfig.from_dict(decoder.metadata["preprocess"])
        cohort = cohort.subset(sorted(cohort.ids)[: args.n_cand])
    subjects = cohort.subjects[: args.n_cand]
    pres = [
        preprocess_subject(s, config) for s in subjects
    ]  # default cache (preprocessing is not timed)
    cache = args.cache or tempfile.mkdtemp(prefix="bench-deformation-")
    os.environ["INVERSION_AUDIT_CACHE"] = cache  # set before the cluster starts: workers inherit it
    rng = np.random.default_rng(0)
    cand_ids = [p.subject_id for p in pres]
    if args.attack:
        rec_ids, rec = real_reconstructions(args.attack, cand_ids, pres, decoder)
    else:
        rec_ids = cand_ids[: args.n_recon]
        rec = np.stack([stand_in(p.image, rng) for p in pres[: args.n_recon]])
    cand = np.stack([p.image for p in pres])
    masks = [p.mask for p in pres]
    grid = centred_affine(config.shape, config.spacing)
    load = os.getloadavg()[0]

    with Timer() as t_ssim:
        ssim = ScoreMatrix(
            "ssim", ssim_matrix(rec, cand, data_range=1.0, device="cpu"), rec_ids, cand_ids
        )
    pairs = top_k_mask(ssim, args.top_k)
    ssim_rank = rank_of_true_match(ssim)
    n_all = len(rec_ids) * len(cand_ids)
    rows, per_preset = [], {}
    for preset in [p for p in args.presets.split(",") if p]:
        subset = pairs.copy()
        if preset == "paper" and args.paper_recon is not None:
            subset[args.paper_recon :] = False
        start = time.perf_counter()
        matrix, failures = deformation_matrix(
            [Volume(r, grid) for r in rec],
            [Volume(c, grid) for c in cand],
            rec_ids,
            cand_ids,
            candidate_masks=masks,
            pairs=subset,
            preset=preset,
            top_k=args.top_k,
            n_workers=args.workers,
            threads_per_worker=1,
        )
        wall = time.perf_counter() - start
        seconds = [
            deformation(Volume(rec[i], grid), Volume(cand[j], grid), preset=preset).seconds
            for i, j in np.argwhere(subset)
            if np.isfinite(matrix.values[i, j])
        ]
        n_rows = int(subset.any(axis=1).sum())
        ranks = rank_of_true_match(matrix)[:n_rows]
        best = np.argmin(np.where(np.isfinite(matrix.values), matrix.values, np.inf), axis=1)[
            :n_rows
        ]
        per_preset[preset] = {"best": best, "matrix": matrix}
        s_pair = float(np.mean(seconds))
        rows.append(
            {
                "preset": preset,
                "pairs": int(subset.sum()),
                "failed": len(failures),
                "s/pair (1 thread)": s_pair,
                f"top-{args.top_k} wall s (measured)": wall,
                "all-pairs wall s (extrapolated)": s_pair * n_all / args.workers,
                "all / top-k": s_pair * n_all / args.workers / wall,
                "top-1 correct": f"{int(np.sum(ranks == 1))}/{n_rows}",
            }
        )
        print_table(rows[-1:])  # each preset as soon as it is done
        print(
            f"  ({preset}: {len(seconds)} pairs; load average now {os.getloadavg()[0]:.1f})",
            flush=True,
        )
        per_preset[preset].update(
            seconds_per_pair=s_pair,
            seconds_per_pair_sd=float(np.std(seconds)),
            wall_top_k=wall,
            wall_all_pairs_extrapolated=s_pair * n_all / args.workers,
            top1_correct=int(np.sum(ranks == 1)),
            failures=[str(f) for f in failures],
        )
    print_table(rows)
    agreement = None
    if {"fast", "paper"} <= set(per_preset):
        k = len(per_preset["paper"]["best"])
        agreement = float(np.mean(per_preset["fast"]["best"][:k] == per_preset["paper"]["best"]))
        print(f"top-1 agreement fast vs paper: {agreement:.0%} of {k} reconstructions")
    print(
        f"SSIM {len(rec_ids)}x{len(cand_ids)}: {t_ssim.seconds:.1f} s; SSIM top-1 correct "
        f"{int(np.sum(ssim_rank == 1))}/{len(rec_ids)}; load average at start {load:.1f}"
    )
    write_results(
        "deformation",
        {
            "n_reconstructions": len(rec_ids),
            "n_candidates": len(cand_ids),
            "shape": list(config.shape),
            "spacing_mm": list(config.spacing),
            "top_k": args.top_k,
            "workers": args.workers,
            "cache_reused": args.cache is not None,
            "reconstructions": args.attack or "stand-ins (blur + noise)",
            "ssim_seconds": t_ssim.seconds,
            "ssim_top1_correct": int(np.sum(ssim_rank == 1)),
            "top1_agreement_fast_vs_paper": agreement,
            "paper_reconstructions": args.paper_recon or len(rec_ids),
            "load_average_at_start": load,
            "rows": rows,
            "presets": {
                k: {kk: vv for kk, vv in v.items() if kk not in ("best", "matrix")}
                | {"best_candidates": [cand_ids[b] for b in v["best"]]}
                for k, v in per_preset.items()
            },
        },
    )


if __name__ == "__main__":
    main()
