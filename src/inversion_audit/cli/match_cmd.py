"""``inversion-audit match``: score reconstructions against a candidate cohort and rank the candidates.

Everything is compared in the preprocessed space, voxel for voxel:

- candidates are the cohort's subjects preprocessed with the flags given here
  (they must equal the attack's preprocessing; ``--shape`` and ``--spacing``
  default to the grid of the ``<id>_recon_pre.nii.gz`` files);
- ``<id>_recon_pre.nii.gz`` files are used as they are (the decoder's output grid);
  their affine must equal the preprocessed grid of subject ``<id>`` when it is a
  candidate, which catches mismatched preprocessing flags;
- ``<id>_recon.nii.gz`` files (the subject's original grid) are resampled back
  onto subject ``<id>``'s preprocessed grid (the inverse of writing them), without
  intensity changes; subject ``<id>`` must then be in the cohort.

For registration both volumes of a pair get one centred affine, so that ANTs
compares anatomy rather than the subjects' positions in their scanners.

Writes to ``--out``: ``scores_<metric>.csv`` (matrices), ``scores.csv`` (long
format), ``rankings.csv``, ``summary.json`` and
``deformation/<reconstruction>__<candidate>_magnitude.nii.gz`` for each
reconstruction's best ``--maps`` candidates by deformation. The maps are read from
the deformation cache that the workers filled; workers of a remote ``--scheduler``
must share the cache folder (``$INVERSION_AUDIT_CACHE``), else those few pairs are
registered again here. Exit code 1 if a deformation pair failed after its retry
(the other results are still written).
"""

from __future__ import annotations

import argparse
import csv
import io
import re
from pathlib import Path

import numpy as np

from ..data import DEFAULT_IMAGE_PATTERN, DEFAULT_LABELS_PATTERN
from ..errors import ConfigError, VolumeError
from .common import add_device_args, add_quiet_arg, setup_logging

__all__ = ["register", "find_reconstructions", "METRIC_DIRECTIONS"]

#: metric -> higher is better
METRIC_DIRECTIONS = {
    "ssim": True,
    "correlation": True,
    "psnr": True,
    "mse": False,
    "deformation": False,
}
AUTO_PATTERNS = ("{id}_recon_pre.nii.gz", "{id}_recon.nii.gz")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "match",
        help="score reconstructions against candidates (SSIM, correlation, deformation) and rank them",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--reconstructions", required=True, help="folder of <id>_recon[_pre].nii.gz files"
    )
    p.add_argument("--candidates", required=True, help="candidate cohort: folder or CSV manifest")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument(
        "--metrics",
        default="ssim,correlation,deformation",
        help=f"comma-separated, from {','.join(METRIC_DIRECTIONS)} (default: %(default)s)",
    )
    p.add_argument(
        "--top-k",
        type=int,
        default=None,
        help="deformation only on each reconstruction's SSIM top-K",
    )
    p.add_argument(
        "--preset", choices=["paper", "fast"], default="paper", help="ANTs deformation preset"
    )
    p.add_argument("--scheduler", default=None, help="address of an existing Dask scheduler")
    p.add_argument(
        "--workers", type=int, default=None, help="LocalCluster workers (default: one per core)"
    )
    p.add_argument(
        "--reconstruction-pattern",
        default=None,
        help="file name pattern with {id} (default: {id}_recon_pre.nii.gz, else {id}_recon.nii.gz)",
    )
    p.add_argument(
        "--mask",
        choices=["none", "candidate"],
        default="none",
        help="score over each candidate's mask",
    )
    p.add_argument(
        "--maps",
        type=int,
        default=1,
        help="magnitude maps for each reconstruction's best N candidates",
    )
    p.add_argument("--image-pattern", default=DEFAULT_IMAGE_PATTERN)
    p.add_argument("--labels-pattern", default=DEFAULT_LABELS_PATTERN)
    p.add_argument(
        "--spacing", type=float, nargs="+", help="preprocessing voxel size in mm (1 or 3 values)"
    )
    p.add_argument(
        "--shape",
        type=int,
        nargs=3,
        help="preprocessed shape (default: the recon_pre files' shape)",
    )
    p.add_argument("--skull-strip", choices=["none", "labels", "mask"], default="none")
    p.add_argument("--intensity", choices=["percentile", "none"], default="percentile")
    p.add_argument(
        "--bias-correction",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="N4 with ANTs (default: on)",
    )
    add_device_args(p)
    add_quiet_arg(p)
    p.set_defaults(handler=_match)


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    if pattern.count("{id}") != 1:
        raise ConfigError(f"--reconstruction-pattern {pattern!r} must contain {{id}} once")
    head, tail = pattern.split("{id}")
    return re.compile(f"^{re.escape(head)}(?P<id>.+?){re.escape(tail)}$")


def find_reconstructions(
    folder: str | Path, pattern: str | None = None
) -> tuple[dict[str, Path], str]:
    """Reconstruction files by subject id, and the pattern used (auto: recon_pre first)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise VolumeError(f"{folder}: reconstruction folder not found")
    for pat in (pattern,) if pattern else AUTO_PATTERNS:
        rx = _pattern_regex(pat)
        found = {m["id"]: p for p in sorted(folder.iterdir()) if (m := rx.match(p.name))}
        if found:
            return found, pat
    raise VolumeError(
        f"{folder}: no reconstruction files matching {pattern or ' or '.join(AUTO_PATTERNS)}"
    )


def _preprocess_config(args, recon_files: dict[str, Path], pattern: str):
    from ..data import PreprocessConfig
    from ..io import read_volume

    spacing = args.spacing
    shape = args.shape
    if pattern.endswith("_pre.nii.gz") and (spacing is None or shape is None):
        first = read_volume(next(iter(recon_files.values())))
        spacing = spacing or list(first.spacing)
        shape = shape or list(first.shape)
    if shape is None:
        raise ConfigError(
            "--shape is required when the reconstructions are not on the preprocessed grid"
        )
    spacing = spacing or [2.0]
    return PreprocessConfig(
        spacing=tuple(spacing) if len(spacing) == 3 else (spacing[0],) * 3,
        shape=tuple(shape),
        skull_strip=args.skull_strip,
        intensity=args.intensity,
        bias_correction=args.bias_correction,
    )


def _load_reconstruction(
    path: Path, rid: str, on_preprocessed: bool, pre_by_id: dict, shape
) -> np.ndarray:
    from nibabel.processing import resample_from_to

    from ..io import read_volume, to_nifti

    vol = read_volume(path)
    own = pre_by_id.get(rid)
    if on_preprocessed:
        if vol.shape != tuple(shape):
            raise VolumeError(
                f"{path}: shape {vol.shape} is not the preprocessed shape {tuple(shape)}"
            )
        if own is not None and not np.allclose(vol.affine, own.affine, atol=1e-3):
            raise VolumeError(
                f"{path}: grid differs from subject {rid!r} preprocessed with these flags; "
                "--spacing/--shape/--skull-strip must match the attack's preprocessing"
            )
        return vol.array
    if own is None:
        raise VolumeError(
            f"{path}: subject {rid!r} is not a candidate, so its preprocessed grid is unknown; "
            "use the <id>_recon_pre.nii.gz file instead"
        )
    out = resample_from_to(to_nifti(vol, scrub=False), (own.shape, own.affine), order=1, cval=0.0)
    return np.asarray(out.dataobj, dtype=np.float32)


def _write_long(path: Path, matrices: list) -> None:
    from ..io import atomic_write_text

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["reconstruction_id", "candidate_id", "metric", "value"])
    for m in matrices:
        w.writerows((r, c, k, repr(v)) for r, c, k, v in m.long_rows())
    atomic_write_text(path, buf.getvalue())


def _write_rankings(path: Path, matrices: list) -> None:
    from ..io import atomic_write_text
    from ..matching import rank_candidates, rank_of_true_match

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(
        ["reconstruction_id", "metric", "rank_of_true_match", "top1_candidate", "top5_candidates"]
    )
    for m in matrices:
        ranks = rank_of_true_match(m)
        for rid, rank, order, row in zip(
            m.reconstruction_ids, ranks, rank_candidates(m), m.computed, strict=True
        ):
            ordered = order[: int(row.sum())]
            w.writerow(
                [
                    rid,
                    m.metric,
                    "" if np.isnan(rank) else f"{rank:g}",
                    ordered[0] if ordered else "",
                    ";".join(ordered[:5]),
                ]
            )
    atomic_write_text(path, buf.getvalue())


def _print_table(summaries: list) -> None:
    def f(v, fmt):
        return "-" if v is None or (isinstance(v, float) and not np.isfinite(v)) else format(v, fmt)

    print("| metric | top-1 | top-5 | n | mean rank | MRR | AUC | own | others |")
    print("|---|---|---|---|---|---|---|---|---|")
    for s in summaries:
        print(
            f"| {s.metric} | {s.top1} | {s.top5} | {s.n} | {f(s.mean_rank, '.2f')} | {f(s.mrr, '.3f')} | "
            f"{f(s.auc, '.3f')} | {f(s.own_mean, '.3f')} | {f(s.others_mean, '.3f')} |"
        )
    for s in summaries:
        for note in s.notes:
            print(f"note ({s.metric}): {note}")


def _match(args: argparse.Namespace) -> int:
    from ..data import load_cohort, preprocess_cohort
    from ..devices import set_threads
    from ..io import atomic_write_json, write_volume
    from ..matching import ScoreMatrix, fuse_rankings, summarize, top_k_mask
    from ..metrics import correlation_matrix, mse, psnr, ssim_matrix
    from ..metrics.deformation import centred_affine, deformation
    from ..progress import tqdm_progress

    setup_logging(args.quiet)
    set_threads(args.threads)
    metrics = [m.strip() for m in args.metrics.split(",") if m.strip()]
    unknown = [m for m in metrics if m not in METRIC_DIRECTIONS]
    if unknown or not metrics:
        raise ConfigError(
            f"--metrics: unknown {', '.join(unknown) or '(none given)'}; choose from {', '.join(METRIC_DIRECTIONS)}"
        )
    if args.top_k is not None and args.top_k < 1:
        raise ConfigError(f"--top-k must be >= 1, got {args.top_k}")
    notes: list[str] = []
    if args.top_k is not None and "deformation" in metrics and "ssim" not in metrics:
        metrics.insert(0, "ssim")
        notes.append("ssim added: --top-k selects deformation pairs by SSIM")

    recon_files, pattern = find_reconstructions(args.reconstructions, args.reconstruction_pattern)
    cohort = load_cohort(args.candidates, args.image_pattern, args.labels_pattern)
    config = _preprocess_config(args, recon_files, pattern)
    out = Path(args.out)
    rec_ids = sorted(recon_files)
    cand_ids = list(cohort.ids)
    matrices: list[ScoreMatrix] = []
    failures = []
    with tqdm_progress(args.quiet) as progress:
        pres = preprocess_cohort(list(cohort), config, progress=progress)
        pre_by_id = {p.subject_id: p for p in pres}
        on_pre = pattern.endswith("_pre.nii.gz")
        rec = np.stack(
            [
                _load_reconstruction(recon_files[i], i, on_pre, pre_by_id, config.shape)
                for i in rec_ids
            ]
        )
        cand = np.stack([p.image for p in pres])
        masks = np.stack([p.mask for p in pres]) if args.mask == "candidate" else None
        mask_note = ["mean over each candidate's mask"] if masks is not None else []

        def add(name: str, values: np.ndarray, extra: list[str] | None = None) -> ScoreMatrix:
            m = ScoreMatrix(
                name, values, rec_ids, cand_ids, METRIC_DIRECTIONS[name], mask_note + (extra or [])
            )
            matrices.append(m)
            return m

        by_name: dict[str, ScoreMatrix] = {}
        if "ssim" in metrics:
            by_name["ssim"] = add(
                "ssim",
                ssim_matrix(
                    rec, cand, data_range=1.0, mask=masks, device=args.device, progress=progress
                ),
            )
        if "correlation" in metrics:
            by_name["correlation"] = add("correlation", correlation_matrix(rec, cand, masks))
        for name, fn in (("psnr", psnr), ("mse", mse)):
            if name in metrics:
                kw = {"data_range": 1.0} if name == "psnr" else {}
                vals = [
                    [
                        fn(r, c, mask=None if masks is None else masks[j], **kw)
                        for j, c in enumerate(cand)
                    ]
                    for r in rec
                ]
                by_name[name] = add(name, np.array(vals))
        if "deformation" in metrics:
            from ..matching.distributed import deformation_matrix

            spacing = config.spacing
            grid = centred_affine(config.shape, spacing)
            pairs = top_k_mask(by_name["ssim"], args.top_k) if args.top_k else None
            mat, failures = deformation_matrix(
                [_vol(r, grid) for r in rec],
                [_vol(c, grid) for c in cand],
                rec_ids,
                cand_ids,
                candidate_masks=list(masks) if masks is not None else None,
                pairs=pairs,
                preset=args.preset,
                top_k=args.top_k,
                scheduler_address=args.scheduler,
                n_workers=args.workers,
                threads_per_worker=args.threads or 1,
                progress=progress,
            )
            mat.notes[:0] = mask_note
            matrices.append(mat)
            by_name["deformation"] = mat
            # magnitude maps of the best candidates: cache hits of the runs above (same machine)
            for a, rid in enumerate(rec_ids):
                best = np.argsort(np.where(mat.computed[a], mat.values[a], np.inf), kind="stable")[
                    : args.maps
                ]
                for b in best:
                    if not mat.computed[a, b]:
                        continue
                    res = deformation(_vol(rec[a], grid), _vol(cand[b], grid), preset=args.preset)
                    write_volume(
                        out / "deformation" / f"{rid}__{cand_ids[b]}_magnitude.nii.gz",
                        res.magnitude.array,
                        pres[b].affine,
                    )
        if "ssim" in by_name and "deformation" in by_name:
            matrices.append(fuse_rankings([by_name["ssim"], by_name["deformation"]]))

    for m in matrices:
        m.to_csv(out / f"scores_{_safe(m.metric)}.csv")
    _write_long(out / "scores.csv", matrices)
    _write_rankings(out / "rankings.csv", matrices)
    summaries = [summarize(m) for m in matrices]
    atomic_write_json(
        out / "summary.json",
        {
            "reconstructions": str(args.reconstructions),
            "reconstruction_pattern": pattern,
            "candidates": str(args.candidates),
            "n_reconstructions": len(rec_ids),
            "n_candidates": len(cand_ids),
            "preprocess": config.to_dict(),
            "deformation_preset": args.preset if "deformation" in metrics else None,
            "top_k": args.top_k,
            "notes": notes,
            "failures": [vars(f) for f in failures],
            "metrics": {s.metric: s.to_dict() for s in summaries},
        },
    )
    _print_table(summaries)
    for note in notes:
        print(f"note: {note}")
    for f in failures:
        print(f"FAILED deformation {f}")
    print(f"wrote scores, rankings and summary to {out}")
    return 1 if failures else 0


def _vol(array: np.ndarray, affine: np.ndarray):
    from ..io import Volume

    return Volume(np.asarray(array, dtype=np.float32), affine)


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.+-]", "_", name)
