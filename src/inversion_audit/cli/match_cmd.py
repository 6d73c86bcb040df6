"""``inversion-audit match``: score reconstructions against a candidate cohort and rank the candidates.

The scores come from the study's own scoring pipeline (:mod:`inversion_audit.matching.pipeline`),
and the output folder is laid out like a study, so it opens in the napari plugin's Review panel (Study tab)
and in ``inversion-audit reader-study create``:

- ``preprocessed/<variant>/<id>.nii.gz``: the candidates preprocessed with the flags given here
  (they must equal the attack's preprocessing); the grid (``--shape``, ``--spacing``) defaults
  to the grid of the ``<id>_recon_pre.nii.gz`` files;
- ``reconstructions/<run>/<id>_recon_pre.nii.gz``: the reconstructions as scored;
  ``<id>_recon.nii.gz`` files (the subject's original grid) are first resampled back onto
  subject ``<id>``'s preprocessed grid, so subject ``<id>`` must be a candidate;
- ``scores/scores.csv`` (fold, arch, variant, threat_model, defence, reconstruction_id,
  candidate_id, metric, value), ``rankings/<run>.csv``, ``deformation/<run>/<id>__<candidate>_magnitude.nii.gz``
  for every registered pair, and ``summary.json``.

``<run>`` is ``<arch>_<variant>_<threat_model>``: from ``--arch``/``--variant``/``--threat-model``,
else from the reconstruction folder's name when it is a run name (a study's
``reconstructions/<run>``), else ``unknown``, the variant from ``--skull-strip``. A defended
run's folder (``<arch>_<variant>_<threat_model>_<defence tag>``) keeps its defence: the
``defence`` column of ``scores.csv`` and the run's name carry its tag.
Deformation runs on each reconstruction's SSIM top-k candidates (``--top-k``; default: all),
with one ITK thread per registration, so results do not depend on ``--threads``.
Exit code 1 if a registration failed (the other results are still written).

``--metrics ...,reid --reid CKPT`` also scores with a trained re-identifier (a study's
``checkpoints/<run>/fold<k>/reid.safetensors`` + ``reid.json``: the sidecar checked, the
weights' hash compared, scored as its recorded ``[reid]`` config says), in the same pipeline call.

Validate, then write: the flags, the ``--reid`` re-identifier, the output folder, every
reconstruction file and every candidate's files (headers and voxels) are checked before the
first write, to ``--out`` or to the preprocessing cache; a refusal leaves both as they were.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..data import DEFAULT_IMAGE_PATTERN, DEFAULT_LABELS_PATTERN
from ..devices import resolve_threads
from ..errors import ConfigError
from ..metrics.registration import BACKEND_PRESETS, REGISTRATION_BACKENDS, check_registration
from .common import (
    add_device_args,
    add_quiet_arg,
    check_subjects,
    load_cohort_arg,
    setup_logging,
)

__all__ = ["register"]

DEFAULT_METRICS = "ssim,correlation,psnr,deformation"
#: pipeline metrics that need the target network's segmentation (not scored here)
NEEDS_MODELS = ("dice",)


def register(sub: argparse._SubParsersAction) -> None:
    from ..matching.pipeline import PIPELINE_METRICS

    p = sub.add_parser(
        "match",
        help="score reconstructions against candidates (SSIM, correlation, deformation) and rank them",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--reconstructions", required=True, help="folder of <id>_recon[_pre].nii.gz files"
    )
    p.add_argument(
        "--candidates", required=True, help="candidate cohort: folder, CSV manifest or 'sample'"
    )
    p.add_argument("--out", required=True, help="output folder (laid out like a study)")
    scored = [m for m in PIPELINE_METRICS if m not in NEEDS_MODELS]
    p.add_argument(
        "--metrics",
        default=DEFAULT_METRICS,
        help=f"comma-separated, from {','.join(scored)}; reid needs --reid (default: %(default)s)",
    )
    p.add_argument(
        "--reid",
        default=None,
        metavar="CKPT",
        help="a trained re-identifier (reid.safetensors + reid.json) for the reid metric",
    )
    p.add_argument(
        "--top-k",
        type=int,
        default=None,
        help="deformation only on each reconstruction's SSIM top-K",
    )
    p.add_argument(
        "--preset",
        choices=sorted({p for ps in BACKEND_PRESETS.values() for p in ps}),
        default=None,
        help="deformation preset (default: paper with ANTs; fast with greedy, its only one)",
    )
    p.add_argument(
        "--registration",
        choices=list(REGISTRATION_BACKENDS),
        default="ants",
        help="registration of the deformation metric: ants (SyN, as the paper ran it) or greedy "
        "(Yushkevich's greedy: affine then NCC deformable, cheaper)",
    )
    p.add_argument("--scheduler", default=None, help="address of an existing Dask scheduler")
    p.add_argument(
        "--workers", type=int, default=None, help="Dask LocalCluster workers for registrations"
    )
    p.add_argument(
        "--reconstruction-pattern",
        default=None,
        help="file name pattern with {id} (default: {id}_recon_pre.nii.gz, else {id}_recon.nii.gz)",
    )
    p.add_argument("--arch", default=None, help="the run's architecture (scores.csv 'arch')")
    p.add_argument("--variant", default=None, help="default: from --skull-strip")
    p.add_argument("--threat-model", default=None, help="the run's threat model")
    p.add_argument("--fold", type=int, default=None, help="the fold (default: none)")
    p.add_argument("--image-pattern", default=DEFAULT_IMAGE_PATTERN)
    p.add_argument("--labels-pattern", default=DEFAULT_LABELS_PATTERN)
    p.add_argument(
        "--spacing", type=float, nargs="+", help="preprocessing voxel size in mm (1 or 3 values)"
    )
    p.add_argument(
        "--shape", type=int, nargs=3, help="preprocessed shape (default: the recon_pre files')"
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


def _options(args: argparse.Namespace):
    """The scoring options of the flags (``top_k`` as given: ``None`` means all candidates)."""
    from ..matching.pipeline import PIPELINE_METRICS, MatchOptions

    metrics = [m.strip() for m in args.metrics.split(",") if m.strip()]
    allowed = [m for m in PIPELINE_METRICS if m not in NEEDS_MODELS]
    unknown = [m for m in metrics if m not in allowed]
    if unknown or not metrics:
        raise ConfigError(
            f"--metrics: unknown {', '.join(unknown) or '(none given)'}; choose from {', '.join(allowed)}"
        )
    if ("reid" in metrics) != bool(args.reid):
        raise ConfigError(
            "--metrics reid needs --reid CKPT (a trained re-identifier, reid.safetensors)"
            if "reid" in metrics
            else f"--reid {args.reid}: given, but --metrics has no reid"
        )
    if args.top_k is not None and args.top_k < 1:
        raise ConfigError(f"--top-k must be >= 1, got {args.top_k}")
    if args.workers is not None and args.workers < 1:
        raise ConfigError(f"--workers must be >= 1, got {args.workers}")
    preset = args.preset or BACKEND_PRESETS[args.registration][0]
    if "deformation" in metrics:
        check_registration(args.registration, preset)  # refused before anything is written
    return MatchOptions(
        metrics=tuple(metrics),
        top_k=args.top_k,
        deformation_preset=preset,
        registration=args.registration,
        scheduler=args.scheduler,
        n_workers=args.workers,
    )


def _run_tags(args: argparse.Namespace) -> tuple[tuple[int | None, str, str, str], str]:
    """``(fold, arch, variant, threat_model)`` of the scores (flags, else the folder's run
    name) and the defence tag of a defended run's folder (``""`` otherwise)."""
    from ..study.layout import parse_run

    try:
        arch, variant, threat, defence = parse_run(Path(args.reconstructions).resolve().name)
    except ValueError:
        arch, threat, defence = "unknown", "unknown", ""
        variant = "with-skull" if args.skull_strip == "none" else "skull-stripped"
    tags = (args.arch or arch, args.variant or variant, args.threat_model or threat)
    for flag, value in zip(("--arch", "--variant", "--threat-model"), tags, strict=True):
        if not value or "_" in value or "/" in value:
            raise ConfigError(f"{flag} {value!r}: must be a non-empty name without '_' or '/'")
    return (args.fold, *tags), defence


def _match(args: argparse.Namespace) -> int:
    import dataclasses

    from ..data import PreprocessConfig, preprocess_cohort, save_pending
    from ..devices import set_threads
    from ..io import atomic_write_json
    from ..io.paths import check_output_folder
    from ..matching import inputs
    from ..matching.pipeline import score_reconstructions
    from ..matching.reid_scorer import load_reid_scorer
    from ..progress import tqdm_progress
    from ..report import summarize_study
    from ..study.index import StudyIndex
    from ..study.scoring import write_match_study

    setup_logging(args.quiet)
    set_threads(args.threads)
    # validate, then write: flags, the output folder, every reconstruction and candidate file
    # are checked before the first write (to --out, or to the cache by preprocessing)
    tags, defence = _run_tags(args)
    options = _options(args)
    reid = load_reid_scorer(args.reid, args.device) if args.reid else None
    check_output_folder(args.out)
    files, pattern = inputs.find_reconstructions(args.reconstructions, args.reconstruction_pattern)
    base = PreprocessConfig(
        skull_strip=args.skull_strip,
        intensity=args.intensity,
        bias_correction=args.bias_correction,
    )
    config = inputs.grid_config(base, files, pattern, args.shape, args.spacing)
    if reid is not None:
        reid.check_grid(config.shape)
    on_pre = inputs.on_preprocessed_grid(pattern)
    cohort = load_cohort_arg(args.candidates, args.image_pattern, args.labels_pattern)
    inputs.check_reconstructions(files, on_pre, config, cohort.ids)
    check_subjects(list(cohort), args.skull_strip, args.candidates)
    options = dataclasses.replace(options, top_k=args.top_k or len(cohort))
    with tqdm_progress(args.quiet) as progress:
        pending: list = []  # cache entries held back until every reconstruction fits its grid
        pres = preprocess_cohort(list(cohort), config, progress=progress, pending=pending)
        candidates = {p.subject_id: p for p in pres}
        recs = {
            rid: inputs.load_reconstruction(files[rid], rid, on_pre, candidates, config.shape)
            for rid in sorted(files)
        }
        save_pending(pending)
        scores = score_reconstructions(
            recs,
            candidates,
            options,
            device=args.device,
            progress=progress,
            registration_workers=resolve_threads(args.threads or "auto"),
            reid_fn=reid,
        )
    summary = write_match_study(Path(args.out), tags, recs, candidates, scores, defence)
    # the run's ranking figures per metric: the report's Table 3 numbers
    study = StudyIndex(args.out)
    summary["metrics"] = summarize_study(study.score_table())["runs"][summary["run"]]["table3"]
    summary.update(
        reconstructions=str(args.reconstructions),
        reconstruction_pattern=pattern,
        candidates=str(args.candidates),
        preprocess=config.to_dict(),
        deformation_preset=options.deformation_preset if "deformation" in options.metrics else None,
        registration=options.registration if "deformation" in options.metrics else None,
        top_k=args.top_k,
        reid=None
        if reid is None
        else {"path": str(args.reid), "weights_sha256": reid.net.metadata.get("weights_sha256")},
    )
    atomic_write_json(study.paths.match_summary, summary)
    _print_table(summary)
    for (rid, cid), message in sorted(scores.failures.items()):
        print(f"FAILED deformation {rid} vs {cid}: {message}")
    print(f"wrote a study folder with scores and rankings to {args.out}")
    return 1 if scores.failures else 0


def _print_table(summary: dict) -> None:
    def f(v, fmt):
        return "-" if v is None else format(v, fmt)

    print("| metric | top-1 | top-5 | n | mean rank | MRR | AUC | own | others |")
    print("|---|---|---|---|---|---|---|---|---|")
    for metric, s in summary["metrics"].items():
        print(
            f"| {metric} | {s['top1']} | {s['top5']} | {s['n']} | {f(s['mean_rank'], '.2f')} | "
            f"{f(s['mrr'], '.3f')} | {f(s['auc'], '.3f')} | {f(s['own_mean'], '.3f')} | "
            f"{f(s['others_mean'], '.3f')} |"
        )
    for metric, s in summary["metrics"].items():
        for note in s["notes"]:
            print(f"note ({metric}): {note}")
