"""Identification with SSIM and correlation restricted to each candidate's brain, post hoc.

The study scores whole-grid SSIM and correlation, as the paper describes. On a skull-stripped
grid most voxels are background in every subject, which lifts the similarity with *other*
subjects. This script re-scores the reconstructions of a study folder (finished or not)
within each candidate's brain mask (its labels > 0), next to the whole-grid numbers, to show
whether the identifying margin lives in the brain tissue itself. It reads only the study's
outputs and changes nothing in the study.

Usage: .venv/bin/python benchmarks/brain_ssim.py --study studies/ixi-dev [--runs RUN ...]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from _common import Timer, print_table, write_results

from inversion_audit.io import read_labels, read_volume
from inversion_audit.matching import ScoreMatrix, summarize
from inversion_audit.metrics import correlation_matrix, ssim_matrix

VARIANTS = ("skull-stripped", "with-skull")


def _variant(run: str) -> str:
    for v in VARIANTS:
        if f"_{v}_" in run:
            return v
    raise SystemExit(f"{run}: no variant in the run name")


def load_run(
    study: Path, run: str
) -> tuple[list[str], np.ndarray, list[str], np.ndarray, np.ndarray]:
    """Reconstruction ids and volumes (preprocessed grid), candidate ids, volumes and brain masks."""
    pre = study / "preprocessed" / _variant(run)
    cand_ids = sorted(
        p.name[: -len(".nii.gz")] for p in pre.glob("*.nii.gz") if "_seg" not in p.name
    )
    cands = np.stack([read_volume(pre / f"{c}.nii.gz").array for c in cand_ids]).astype(np.float32)
    masks = np.stack([read_labels(pre / f"{c}_seg.nii.gz").array > 0 for c in cand_ids])
    files = sorted((study / "reconstructions" / run).glob("*_recon_pre.nii.gz"))
    rec_ids = [p.name[: -len("_recon_pre.nii.gz")] for p in files]
    recs = np.stack([read_volume(p).array for p in files]).astype(np.float32)
    return rec_ids, recs, cand_ids, cands, masks


def score_run(study: Path, run: str) -> dict:
    """Top-1, mean rank and own vs others for whole-grid and brain-masked SSIM and correlation."""
    rec_ids, recs, cand_ids, cands, masks = load_run(study, run)
    with Timer() as t:
        matrices = {
            "ssim (whole grid)": ssim_matrix(recs, cands, data_range=1.0),
            "ssim (brain)": ssim_matrix(recs, cands, data_range=1.0, mask=masks),
            "correlation (whole grid)": correlation_matrix(recs, cands),
            "correlation (brain)": correlation_matrix(recs, cands, mask=masks),
        }
    out = {"n_reconstructions": len(rec_ids), "n_candidates": len(cand_ids), "seconds": t.seconds}
    for name, values in matrices.items():
        s = summarize(ScoreMatrix(name, values, rec_ids, cand_ids, True))
        out[name] = {
            "top1": s.top1,
            "n": s.n,
            "mean_rank": s.mean_rank,
            "own": s.own_mean,
            "others": s.others_mean,
            "auc": s.auc,
        }
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--study", required=True)
    ap.add_argument("--runs", nargs="*", help="run names (default: every run with reconstructions)")
    args = ap.parse_args()
    study = Path(args.study)
    runs = args.runs or sorted(p.name for p in (study / "reconstructions").iterdir() if p.is_dir())
    results = {run: score_run(study, run) for run in runs}
    rows = [
        {
            "run": run,
            "metric": metric,
            "top-1": f"{m['top1']} / {m['n']}",
            "mean rank": round(m["mean_rank"], 2),
            "own": round(m["own"], 3),
            "others": round(m["others"], 3),
            "own - others": round(m["own"] - m["others"], 3),
            "AUC": round(m["auc"], 3),
        }
        for run, r in results.items()
        for metric, m in r.items()
        if isinstance(m, dict)
    ]
    print_table(rows)
    write_results(
        "brain_ssim", {"command": "benchmarks/brain_ssim.py --study " + args.study, "runs": results}
    )


if __name__ == "__main__":
    main()
