"""Candidate settings for the `fast` ANTs preset: top-1 agreement with `paper` and cost per pair.

Same pairs as ``bench_deformation.py --attack DIR``: the decoder's reconstructions of fold
0's private subjects against the first 40 ixi-dev subjects, each reconstruction's SSIM
top-5 candidates. The `paper` results are read from the deformation cache that
``bench_deformation.py --cache CACHE`` filled (computed, slowly, when missing). Each variant
registers the same pairs in this process and reports the fraction of reconstructions whose
best candidate (smallest mean displacement) equals `paper`'s.

Usage: .venv/bin/python benchmarks/tune_fast_preset.py --attack /tmp/ixi-fold/unet_bottleneck
       --cache /tmp/bench-deformation-cnl2868n [--variants current,cc2-untuned,syn-8-4mm-cc2] [--n-recon 10]
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
from _common import IXI_DEV, print_table, write_results
from bench_deformation import real_reconstructions

from inversion_audit.data import PreprocessConfig, load_cohort, preprocess_subject
from inversion_audit.io import Volume
from inversion_audit.matching import ScoreMatrix, top_k_mask
from inversion_audit.metrics import deformation, ssim_matrix
from inversion_audit.metrics.deformation import (
    DEFORMATION_PRESETS,
    REGISTRATION_SPACING_MM,
    centred_affine,
)

_FAST_AFFINE, _FAST_SYN = DEFORMATION_PRESETS["fast"]


def _variant(affine: dict, syn: dict) -> tuple[tuple[dict, ...], float]:
    """The shipped `fast` stages with some settings replaced, on 4 mm copies."""
    return (_FAST_AFFINE | affine, _FAST_SYN | syn), 4.0


#: name -> (stages, registration spacing in mm); "current" is the shipped `fast` preset
VARIANTS: dict[str, tuple[tuple[dict, ...], float | None]] = {
    "current": (DEFORMATION_PRESETS["fast"], REGISTRATION_SPACING_MM["fast"]),
    # the `fast` preset before tuning: CC radius 2, 40x10x0 SyN, 1000x500x0 affine
    "cc2-untuned": _variant(
        {"aff_iterations": (1000, 500, 0)},
        {"syn_metric": "CC", "syn_sampling": 2, "reg_iterations": (40, 10, 0)},
    ),
    "syn-8-4mm-cc2": _variant({}, {"syn_metric": "CC", "syn_sampling": 2}),
}


def install_variant(name: str) -> str:
    """Register a variant as a deformation preset of this process; return the preset name."""
    if name == "current":
        return "fast"
    DEFORMATION_PRESETS[name], REGISTRATION_SPACING_MM[name] = VARIANTS[name]
    return name


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--attack", required=True, help="folder with target/inversion checkpoints")
    ap.add_argument("--cache", required=True, help="the deformation cache of bench_deformation.py")
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--n-cand", type=int, default=40)
    ap.add_argument("--n-recon", type=int, default=10)
    ap.add_argument("--top-k", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    os.environ["INVERSION_AUDIT_CACHE"] = args.cache
    from inversion_audit.checkpoints import load_inversion

    decoder = load_inversion(os.path.join(args.attack, "inversion.safetensors"))
    config = PreprocessConfig.from_dict(decoder.metadata["preprocess"])
    cohort = load_cohort(IXI_DEV)
    cohort = cohort.subset(sorted(cohort.ids)[: args.n_cand])
    pres = [preprocess_subject(s, config) for s in cohort.subjects]
    cand_ids = [p.subject_id for p in pres]
    rec_ids, rec = real_reconstructions(args.attack, cand_ids, pres, decoder)
    rec_ids, rec = rec_ids[: args.n_recon], rec[: args.n_recon]
    cand = np.stack([p.image for p in pres])
    grid = centred_affine(config.shape, config.spacing)
    ssim = ScoreMatrix("ssim", ssim_matrix(rec, cand, data_range=1.0), rec_ids, cand_ids)
    pairs = top_k_mask(ssim, args.top_k)

    def best(preset: str) -> tuple[list[str], float]:
        picks, seconds = [], []
        for i in range(len(rec_ids)):
            scores = {}
            for j in np.flatnonzero(pairs[i]):
                res = deformation(
                    Volume(rec[i], grid),
                    Volume(cand[j], grid),
                    fixed_mask=pres[j].mask,
                    preset=preset,
                    threads=args.threads,
                )
                scores[cand_ids[j]] = res.mean_displacement_mm
                seconds.append(res.seconds)
            picks.append(min(scores, key=scores.get))
        return picks, float(np.mean(seconds))

    paper, paper_s = best("paper")
    rows = []
    for name in [v for v in args.variants.split(",") if v]:
        start = time.perf_counter()
        picks, s_pair = best(install_variant(name))
        agree = float(np.mean([a == b for a, b in zip(picks, paper, strict=True)]))
        rows.append(
            {
                "variant": name,
                "agreement with paper": agree,
                "s/pair": s_pair,
                "paper s/pair ÷ this": paper_s / s_pair,
                "top-1 correct": f"{sum(p == r for p, r in zip(picks, rec_ids, strict=True))}/{len(rec_ids)}",
                "wall s": time.perf_counter() - start,
            }
        )
        print_table(rows[-1:])
    print_table(rows)
    print(
        f"paper: {paper_s:.1f} s/pair; top-1 correct {sum(p == r for p, r in zip(paper, rec_ids, strict=True))}/{len(rec_ids)}"
    )
    write_results(
        "tune_fast_preset",
        {
            "reconstructions": args.attack,
            "n_reconstructions": len(rec_ids),
            "top_k": args.top_k,
            "paper_best": paper,
            "variants": {k: [list(map(str, v[0])), v[1]] for k, v in VARIANTS.items()},
            "rows": rows,
        },
    )


if __name__ == "__main__":
    main()
