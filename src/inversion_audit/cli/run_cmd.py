"""``inversion-audit run CONFIG.toml --out STUDY_DIR``: the end-to-end, resumable audit study,
then its report (:func:`inversion_audit.report.run_and_report`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..devices import DEVICES
from .common import add_quiet_arg

__all__ = ["register"]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="run (or resume) an audit study from a TOML config")
    p.add_argument("config", help="study config (TOML)")
    p.add_argument("--out", required=True, help="study folder (created; re-running resumes)")
    p.add_argument(
        "--device",
        default=None,
        choices=list(DEVICES),
        help="override study.device",
    )
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="override study.threads and matching.threads (the registration workers)",
    )
    p.add_argument(
        "--plan",
        action="store_true",
        help="list every stage as done or to run, and run nothing",
    )
    p.add_argument(
        "--reuse-from",
        default=None,
        metavar="STUDY",
        help="copy the stages that STUDY finished with the same settings and inputs instead of "
        "rerunning them (e.g. the undefended runs of an audit into its defences study)",
    )
    add_quiet_arg(p)
    p.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    from ..io.paths import check_output_folder
    from ..progress import tqdm_progress
    from ..report import run_and_report
    from ..study.config import apply_overrides, load_study_config
    from ..study.layout import StudyPaths

    # --device and --threads override the config as napari's Run study does (None: as it says)
    config = apply_overrides(
        load_study_config(args.config), device=args.device, threads=args.threads
    )
    check_output_folder(args.out)  # an --out that is a file fails here, not after a stage
    if args.plan:
        return _print_plan(config, args.out, args.reuse_from)
    with tqdm_progress(quiet=args.quiet) as progress:
        out = run_and_report(config, args.out, progress=progress, reuse_from=args.reuse_from)
    report = StudyPaths(Path(out).resolve()).report("html")
    print(f"report: {report}")
    print(
        f"open the study in napari: napari, then Plugins > Inversion Audit > Review, Study tab, and choose {Path(out).resolve()}"
    )
    return 0


def _print_plan(config, out: str, reuse_from: str | None = None) -> int:
    from ..study.runner import plan_study_seconds

    plan = plan_study_seconds(config, out, reuse_from)
    here = {n for n, done, _ in plan_study_seconds(config, out) if done} if reuse_from else None
    for name, done, seconds in plan:
        when = "" if seconds is None else f"{'' if done else '~'}{seconds / 60:.1f} min"
        status = "to run"
        if done:
            status = "reuse " if here is not None and name not in here else "done  "
        print(f"{status}  {when:>10}  {name}")
    todo = [seconds for _, done, seconds in plan if not done]
    known = [s for s in todo if s is not None]
    reused = (
        f" ({len(plan) - len(todo) - len(here)} to copy from {reuse_from})"
        if here is not None
        else ""
    )
    print(
        f"{len(plan) - len(todo)} of {len(plan)} stages done in {out}{reused}; {len(todo)} to run"
    )
    if todo:
        unknown = len(todo) - len(known)
        print(
            f"about {sum(known) / 3600:.1f} h of stage time left at the pace recorded so far"
            + (f", plus {unknown} stage(s) of a kind not run yet" if unknown else "")
        )
    return 0
