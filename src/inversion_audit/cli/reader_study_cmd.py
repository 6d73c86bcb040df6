"""``inversion-audit reader-study create|analyze|split``: blinded expert reader studies.

``create`` writes a reader package folder (what readers open) and a separate key file (the
coordinator's); ``analyze`` joins the key with the package's answers; ``split`` turns a
single-file database of earlier versions into a package and a key.
"""

from __future__ import annotations

import argparse

from .common import split_ids

__all__ = ["register"]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("reader-study", help="blinded expert reader studies of a finished study")
    rsub = p.add_subparsers(dest="reader_study_command", metavar="ACTION")

    c = rsub.add_parser(
        "create", help="write a blinded reader package (for readers) and its key (for you)"
    )
    c.add_argument("--study", required=True, help="study folder written by 'inversion-audit run'")
    c.add_argument(
        "--readers", required=True, nargs="+", help="reader names: alice,bob or alice bob"
    )
    c.add_argument(
        "--candidates",
        type=int,
        default=5,
        help="candidates per case, true original included (2-8)",
    )
    c.add_argument(
        "--strategy",
        choices=["random", "hardest"],
        default="random",
        help="distractors: random, or highest SSIM",
    )
    c.add_argument(
        "--run",
        default=None,
        help="run folder, e.g. unet_skull-stripped_bottleneck (default: the most identifiable)",
    )
    c.add_argument("--seed", type=int, default=0)
    c.add_argument(
        "--quality-only",
        type=int,
        default=0,
        metavar="N",
        help="add N cases showing a reconstruction alone",
    )
    c.add_argument(
        "--no-revisit", action="store_true", help="readers cannot go back and change answers"
    )
    c.add_argument(
        "--questions", nargs="+", default=None, help="subset of match,confidence,anatomy,comment"
    )
    c.add_argument(
        "--include-defended",
        action="store_true",
        help="mix in cases from the run's defended runs (the defence is kept in the key only)",
    )
    c.add_argument(
        "--recurrence",
        choices=["balanced", "unique", "free"],
        default="balanced",
        help="how often a candidate recurs across cases: balanced (each subject the truth of one "
        "case and shown in K), unique (no image in two cases; fewer cases), free (as drawn)",
    )
    _add_outputs(c)
    c.set_defaults(handler=_create)

    a = rsub.add_parser("analyze", help="accuracy, agreement, time and Likert statistics")
    a.add_argument(
        "db", help="the study's key (or a single-file reader-study database of earlier versions)"
    )
    a.add_argument(
        "--package",
        action="extend",
        nargs="+",
        default=[],
        metavar="PACKAGE",
        help="reader package folder(s) holding the answers (default: the one the key records); "
        "readers' copies may be given together",
    )
    a.add_argument("--out", required=True, help="output folder")
    a.set_defaults(handler=_analyze)

    s = rsub.add_parser(
        "split",
        help="turn a single-file database of earlier versions into a reader package and a key",
    )
    s.add_argument("db", help="single-file reader-study database (its answers are carried over)")
    _add_outputs(s)
    s.set_defaults(handler=_split)
    p.set_defaults(handler=lambda args: (p.print_help(), 2)[1])


def _add_outputs(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--out",
        required=True,
        metavar="PACKAGE",
        help="new (or empty) folder for the reader package, which readers get",
    )
    p.add_argument(
        "--key",
        required=True,
        help="new file for the answer key, kept by the coordinator (never inside --out)",
    )


def _written(out: str, key: str) -> None:
    print(f"reader package: {out} (give this folder to the readers)")
    print(f"answer key: {key} (keep it from readers; 'reader-study analyze' reads it)")


def _create(args: argparse.Namespace) -> int:
    from ..reader_study import QUESTIONS, check_outputs, create_design, write_package

    check_outputs(args.out, args.key)  # before any work; nothing is written on a refusal
    readers = split_ids(args.readers) or []
    questions = tuple(split_ids(args.questions) or QUESTIONS)
    design = create_design(
        args.study,
        readers,
        n_candidates=args.candidates,
        strategy=args.strategy,
        run=args.run,
        seed=args.seed,
        quality_only_cases=args.quality_only,
        allow_revisit=not args.no_revisit,
        questions=questions,
        include_defended=args.include_defended,
        recurrence=args.recurrence,
    )
    write_package(args.out, args.key, design)
    n_match = sum(c.kind == "match" for c in design.cases)
    print(
        f"{len(design.cases)} cases ({n_match} match, {len(design.cases) - n_match} "
        f"quality-only) from run {design.run}, {design.n_candidates} candidates "
        f"({design.strategy}), readers {', '.join(design.readers)}"
    )
    _written(args.out, args.key)
    return 0


def _split(args: argparse.Namespace) -> int:
    from ..reader_study import split_database

    split_database(args.db, args.out, args.key)
    _written(args.out, args.key)
    return 0


def _analyze(args: argparse.Namespace) -> int:
    from ..reader_study import write_analysis

    result = write_analysis(args.db, args.out, args.package)
    pooled = result["pooled"]
    if result["n_answer_rows"] == 0:
        print(f"{args.db}: no answers yet")
    for reader, b in result["readers"].items():
        acc = "n/a" if b["accuracy"] is None else f"{100 * b['accuracy']:.0f}%"
        print(f"{reader:<16} {b['correct']:>3}/{b['n']:<3} top-1 {acc}")
    acc = "n/a" if pooled["accuracy"] is None else f"{100 * pooled['accuracy']:.0f}%"
    print(
        f"{'pooled':<16} {pooled['correct']:>3}/{pooled['n']:<3} top-1 {acc} (chance {100 * result['design']['chance']:.0f}%)"
    )
    print(f"wrote reader_study.json, reader_study.md, answers.csv, case_key.csv to {args.out}")
    return 0
