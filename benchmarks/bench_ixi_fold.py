"""The attack on one ixi-dev fold: train target and inversion decoder, reconstruct the private set.

Fold 0 of ``kfold_split(first 40 sorted ixi-dev ids, 4 folds, seed 0)``: 10 private
subjects train the target network, 30 attack subjects the inversion decoder. The 10
private subjects are reconstructed and compared with their own preprocessed originals
by SSIM (skimage, Gaussian window sigma 1.5, data range 1), over the whole grid and
inside the brain mask; the mean SSIM with the other 9 private subjects is the
reference ("others", as in the paper's Table 2). Settings come from
``configs/ixi-dev-fold.toml``. Checkpoints go to ``--work`` (outside the repository).

Usage: nohup .venv/bin/python benchmarks/bench_ixi_fold.py [--archs unet segnet] [--threads 2] &
"""

from __future__ import annotations

import argparse
import logging
import resource
import sys
import time
import tomllib
from pathlib import Path

import numpy as np
from _common import IXI_DEV, ROOT, peak_rss_mb, print_table, write_results

from inversion_audit.data import PreprocessConfig, kfold_split, load_cohort, preprocess_cohort


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _ssim(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> float:
    from skimage.metrics import structural_similarity

    kw = {"data_range": 1.0, "gaussian_weights": True, "sigma": 1.5, "use_sample_covariance": False}
    if mask is None:
        return float(structural_similarity(a, b, **kw))
    _, smap = structural_similarity(a, b, full=True, **kw)
    return float(smap[mask].mean())


def _dice(pred: np.ndarray, truth: np.ndarray, n_classes: int) -> float:
    scores = []
    for c in range(1, n_classes):
        p, t = pred == c, truth == c
        if t.any() or p.any():
            scores.append(2 * np.logical_and(p, t).sum() / (p.sum() + t.sum()))
    return float(np.mean(scores))


def run_arch(arch, settings, fold, pres, args, log) -> dict:
    from inversion_audit.attack import InversionConfig, reconstruct, train_inversion
    from inversion_audit.checkpoints import (
        load_inversion,
        load_target,
        save_checkpoint,
        state_hash,
        training_metadata,
    )
    from inversion_audit.training import TargetConfig, apply_label_map, segment, train_target

    tcfg = TargetConfig.from_dict({**settings["target"], "arch": arch})
    icfg = InversionConfig.from_dict({**settings["inversion"], "threat_model": args.threat_model})
    pre_config = PreprocessConfig.from_dict(settings["preprocess"])
    work = Path(args.work) / f"{arch}_{args.threat_model.replace('+', '-')}"
    private = [pres[i] for i in fold.private_set]
    attack = [pres[i] for i in fold.attack_set]
    times = {}

    t0, c0 = time.perf_counter(), _cpu()
    if args.reuse and (work / "target.json").exists():
        target = load_target(work / "target")
        target_history = None
    else:
        target, target_history = train_target(
            [p.image for p in private], [p.labels for p in private], tcfg, device=args.device
        )
        save_checkpoint(
            work / "target",
            target,
            training_metadata(tcfg, target_history, pre_config, fold.private_set),
        )
    times["target_s"], times["target_cpu_s"] = time.perf_counter() - t0, _cpu() - c0
    log.info("%s target: %.0f s", arch, times["target_s"])

    t0, c0 = time.perf_counter(), _cpu()
    if args.reuse and (work / "inversion.json").exists():
        decoder = load_inversion(work / "inversion", target=target)
        inv_history = None
    else:
        decoder, inv_history = train_inversion(
            target, [p.image for p in attack], icfg, device=args.device
        )
        meta = training_metadata(icfg, inv_history, pre_config, fold.attack_set)
        meta["target_weights_sha256"] = state_hash(target)
        save_checkpoint(work / "inversion", decoder, meta)
    times["inversion_s"], times["inversion_cpu_s"] = time.perf_counter() - t0, _cpu() - c0
    log.info("%s inversion: %.0f s", arch, times["inversion_s"])

    t0 = time.perf_counter()
    recs = {
        p.subject_id: reconstruct(target, decoder, p.image, device=args.device) for p in private
    }
    times["reconstruct_s"] = time.perf_counter() - t0

    n_classes = target.arch_args["n_classes"]
    subjects = []
    for p in private:
        rec = recs[p.subject_id]
        others = [_ssim(q.image, rec) for q in private if q.subject_id != p.subject_id]
        truth = apply_label_map(p.labels, tcfg.label_map)
        subjects.append(
            {
                "subject": p.subject_id,
                "ssim": _ssim(p.image, rec),
                "ssim_brain": _ssim(p.image, rec, p.mask),
                "ssim_others_mean": float(np.mean(others)),
                "own_is_best": bool(_ssim(p.image, rec) > max(others)),
                "dice_original": _dice(segment(target, p.image, args.device), truth, n_classes),
                "dice_reconstruction": _dice(segment(target, rec, args.device), truth, n_classes),
            }
        )
    return {
        "arch": arch,
        "threat_model": args.threat_model,
        "target_config": tcfg.to_dict(),
        "inversion_config": icfg.to_dict(),
        "times": times,
        "train_s": times["target_s"] + times["inversion_s"],
        "target_epoch_loss": target_history.epoch_loss if target_history else None,
        "inversion_epoch_loss": inv_history.epoch_loss if inv_history else None,
        "subjects": subjects,
        "mean_ssim": float(np.mean([s["ssim"] for s in subjects])),
        "mean_ssim_brain": float(np.mean([s["ssim_brain"] for s in subjects])),
        "mean_ssim_others": float(np.mean([s["ssim_others_mean"] for s in subjects])),
        "own_best_of_10": int(sum(s["own_is_best"] for s in subjects)),
        "mean_dice_original": float(np.mean([s["dice_original"] for s in subjects])),
        "mean_dice_reconstruction": float(np.mean([s["dice_reconstruction"] for s in subjects])),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default=str(ROOT / "configs" / "ixi-dev-fold.toml"))
    ap.add_argument("--cohort", default=str(IXI_DEV))
    ap.add_argument("--archs", nargs="+", default=["unet", "segnet"])
    ap.add_argument("--threat-model", default="bottleneck")
    ap.add_argument("--fold", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--work", default="/tmp/ixi-fold")
    ap.add_argument(
        "--reuse", action="store_true", help="load checkpoints from --work instead of training"
    )
    ap.add_argument("--name", default="ixi_fold")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    log = logging.getLogger("bench_ixi_fold")
    from inversion_audit.devices import set_threads

    set_threads(args.threads)
    settings = tomllib.loads(Path(args.config).read_text())
    cohort = load_cohort(args.cohort)
    ids = sorted(cohort.ids)[:40]
    fold = kfold_split(ids, 4, seed=0)[args.fold]
    t0 = time.perf_counter()
    pre_config = PreprocessConfig.from_dict(settings["preprocess"])
    pres = {p.subject_id: p for p in preprocess_cohort(cohort.subset(ids).subjects, pre_config)}
    preprocess_s = time.perf_counter() - t0
    log.info("preprocessed %d subjects in %.0f s", len(pres), preprocess_s)
    results = []
    for arch in args.archs:
        results.append(run_arch(arch, settings, fold, pres, args, log))
        r = results[-1]
        log.info(
            "%s: mean SSIM %.3f (brain %.3f, others %.3f), train %.0f s",
            arch,
            r["mean_ssim"],
            r["mean_ssim_brain"],
            r["mean_ssim_others"],
            r["train_s"],
        )
        with open("/proc/loadavg") as fh:
            load = fh.read().split()[:3]
        write_results(
            args.name,
            {
                "command": "benchmarks/bench_ixi_fold.py " + " ".join(sys.argv[1:]),
                "config": settings,
                "fold": {
                    "index": fold.index,
                    "n_private": len(fold.private_set),
                    "n_attack": len(fold.attack_set),
                },
                "preprocess_s": preprocess_s,
                "threads": args.threads,
                "load_average_at_end": load,
                "peak_rss_mb": peak_rss_mb(),
                "results": results,
            },
        )
    rows = []
    for r in results:
        for s in r["subjects"]:
            rows.append({"arch": r["arch"], **{k: v for k, v in s.items()}})
    print_table(rows)
    print_table(
        [
            {
                k: r[k]
                for k in (
                    "arch",
                    "mean_ssim",
                    "mean_ssim_brain",
                    "mean_ssim_others",
                    "own_best_of_10",
                    "mean_dice_original",
                    "mean_dice_reconstruction",
                    "train_s",
                )
            }
            for r in results
        ]
    )


if __name__ == "__main__":
    main()
