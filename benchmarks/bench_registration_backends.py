"""Registration backends against the paper's: greedy and ANTs ``fast`` vs ANTs ``paper``.

Issue 29, item 2. On a study's reconstructions (preprocessed grid) every reconstruction is
registered to its SSIM top-k candidates (``scores.csv``'s SSIM; ``--top-k``, default 5) with
three settings, in one run and interleaved (reconstruction by reconstruction), each pair as
the study's pipeline registers it (the centred comparison grid, one ITK thread, the
pipeline's seed, ``--threads`` pairs at once in child processes):

- ``ants-paper``: ANTs affine + SyN as the paper ran it (the reference);
- ``ants-fast``: ANTs ``fast`` (the study's default preset);
- ``greedy-fast``: greedy, affine then NCC deformable.

The mean displacement is taken inside the candidate's brain (its label map > 0 when the study
holds one on the candidate's grid, else its non-zero voxels; the JSON says which). Per
``(run, fold)`` group and over all, against ``ants-paper``:

- ``top1_agreement``: the fraction of reconstructions whose smallest-displacement candidate is
  ``paper``'s;
- ``spearman``: Spearman correlation of the mean displacements of all pairs;
- ``topk_rank_agreement``: per reconstruction, the fraction of its k candidates given the same
  rank as by ``paper``, averaged; ``topk_kendall``: the mean Kendall tau of those rankings;
- ``cpu_seconds_per_pair``: CPU time of the registration itself (the child's, all threads),
  and ``wall_seconds_per_pair``; ``top1_correct``: reconstructions whose best candidate is
  their own original.

Resumable: every pair is written to the output JSON as it finishes; a run with the same
output and study skips the pairs already there (CPU times stay valid: each is the pair's own).

A study with reconstructions: the ixi-dev protocol study (hours on 2 cores),
    .venv/bin/inversion-audit run configs/ixi-dev.toml --out studies/ixi-dev
(any study folder with ``reconstructions/``, ``preprocessed/`` and ``scores/scores.csv``
works). Then, for fold 0 of both networks (about 1.5 h a network and variant on 2 cores):
    nice .venv/bin/python benchmarks/bench_registration_backends.py --study studies/ixi-dev \\
        --folds 0 --runs skull-stripped_bottleneck --threads auto

Without a study, ``--stand-ins N`` checks the script on ixi-dev scans: the first N subjects
blurred and noised (``bench_ssim.stand_in``) against the first ``--candidates`` subjects,
skull-stripped at 2 mm (96 x 112 x 96), no bias correction; its numbers are no benchmark.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
from _common import IXI_DEV, RESULTS, print_table

from inversion_audit.devices import resolve_threads
from inversion_audit.io import Volume, atomic_write_json
from inversion_audit.matching.pipeline import REGISTRATION_SEED, comparison_grid
from inversion_audit.metrics import register_pairs

#: (label, backend, preset); the first is the reference
SETTINGS = (
    ("ants-paper", "ants", "paper"),
    ("ants-fast", "ants", "fast"),
    ("greedy-fast", "greedy", "fast"),
)
REFERENCE = SETTINGS[0][0]


# -- inputs ---------------------------------------------------------------------------------------
class Group:
    """One ``(run, fold)``: reconstructions, their top-k candidates, candidate volumes and masks."""

    def __init__(self, name: str, spacing: tuple[float, ...]) -> None:
        self.name, self.spacing = name, spacing
        self.reconstructions: dict[str, np.ndarray] = {}
        self.top: dict[str, list[str]] = {}
        self.candidates: dict[str, np.ndarray] = {}
        self.masks: dict[str, np.ndarray] = {}
        self.mask_source = ""

    @property
    def shape(self) -> tuple[int, ...]:
        return next(iter(self.candidates.values())).shape


def study_groups(args) -> list[Group]:
    from inversion_audit.study.index import StudyIndex

    index = StudyIndex.open(args.study)
    by_group: dict[tuple[str, int | None], list] = defaultdict(list)
    for e in index.entries:
        if args.runs and not any(r in e.run for r in args.runs):
            continue
        if args.folds is not None and e.fold not in args.folds:
            continue
        by_group[(e.run, e.fold)].append(e)
    groups = []
    for (run, fold), entries in sorted(by_group.items(), key=lambda kv: (kv[0][0], kv[0][1] or 0)):
        group = None
        for e in entries[: args.max_reconstructions]:
            ssim = {c.candidate_id: c.ssim for c in index.candidates(run, e.reconstruction_id)}
            ssim = {c: v for c, v in ssim.items() if np.isfinite(v)}
            if not ssim:
                print(f"skip {run} {e.reconstruction_id}: no SSIM in scores.csv")
                continue
            rec = index.read_reconstruction(run, e.reconstruction_id)
            if rec is None:
                continue
            if group is None:
                group = Group(f"{run}/fold{fold}", rec.spacing)
            group.reconstructions[e.reconstruction_id] = np.asarray(rec.array, np.float32)
            top = sorted(ssim, key=lambda c: -ssim[c])[: args.top_k]
            group.top[e.reconstruction_id] = top
            for cid in top:
                if cid not in group.candidates:
                    cand = index.read_candidate(e.variant, cid)
                    group.candidates[cid] = np.asarray(cand.array, np.float32)
                    group.masks[cid], group.mask_source = _brain(index, e.variant, cid, cand.array)
        if group is not None:
            groups.append(group)
    return groups


def _brain(index, variant: str, cid: str, image: np.ndarray) -> tuple[np.ndarray, str]:
    from inversion_audit.io import read_labels

    path = index.labels_file(variant, cid)
    if path is not None:
        labels = np.asarray(read_labels(path).array)
        if labels.shape == image.shape and (labels > 0).any():
            return labels > 0, "the candidate's labels > 0"
    return np.asarray(image) > 0, "the candidate's non-zero voxels"


def stand_in_groups(args) -> list[Group]:
    from bench_ssim import stand_in

    from inversion_audit.data import PreprocessConfig, load_cohort, preprocess_subject
    from inversion_audit.metrics import ssim_matrix

    config = PreprocessConfig(skull_strip="labels", shape=(96, 112, 96), bias_correction=False)
    subjects = load_cohort(IXI_DEV).subjects[: args.candidates]
    pres = [preprocess_subject(s, config) for s in subjects]
    rng = np.random.default_rng(0)
    group = Group("stand-ins/ixi-dev", tuple(config.spacing))
    for p in pres[: args.stand_ins]:
        group.reconstructions[p.subject_id] = stand_in(p.image, rng)
    for p in pres:
        group.candidates[p.subject_id] = p.image.astype(np.float32)
        group.masks[p.subject_id] = (p.labels > 0) if p.labels is not None else p.mask
    group.mask_source = "the candidate's labels > 0"
    ids = list(group.candidates)
    S = ssim_matrix(
        np.stack(list(group.reconstructions.values())),
        np.stack([group.candidates[c] for c in ids]),
        data_range=1.0,
        device="cpu",
    )
    for a, rid in enumerate(group.reconstructions):
        group.top[rid] = [ids[b] for b in np.argsort(-S[a])[: args.top_k]]
    return [group]


# -- registration, resumable ----------------------------------------------------------------------
def key(group: str, rid: str, cid: str, setting: str) -> str:
    return f"{group}|{rid}|{cid}|{setting}"


def load_partial(path: Path, source: str) -> tuple[dict[str, dict], dict[tuple[str, str], list]]:
    """The pairs of an earlier run of the same source and each of its reconstructions' top-k
    candidates (empty when there is none)."""
    from inversion_audit.errors import OutputError
    from inversion_audit.io.untrusted import read_json

    if not path.is_file():
        return {}, {}
    data = read_json(path, OutputError, "benchmark results")
    if data.get("source") != source:
        raise SystemExit(
            f"{path} holds results of {data.get('source')!r}, not {source!r}: pass another --out"
        )
    pairs = {
        key(p["group"], p["reconstruction"], p["candidate"], p["setting"]): p for p in data["pairs"]
    }
    top = {tuple(k.split("|", 1)): list(v) for k, v in data.get("candidates", {}).items()}
    return pairs, top


def register_group(group: Group, done: dict[str, dict], workers: int, save) -> None:
    grid = comparison_grid(group.shape, group.spacing)
    for rid, rec in group.reconstructions.items():
        top = group.top[rid]
        for label, backend, preset in SETTINGS:  # interleaved: load drifts hit all alike
            todo = [c for c in top if key(group.name, rid, c, label) not in done]
            if not todo:
                continue
            start = time.perf_counter()
            results, failed = register_pairs(
                [Volume(rec, grid)],
                [Volume(group.candidates[c], grid) for c in todo],
                [(0, b) for b in range(len(todo))],
                [group.masks[c] for c in todo],
                preset=preset,  # type: ignore[arg-type]
                workers=min(workers, len(todo)),
                seed=REGISTRATION_SEED,
                cache=False,  # every pair measured here, not read back
                isolated=True,
                registration=backend,
            )
            for (_, b), res in results.items():
                done[key(group.name, rid, todo[b], label)] = {
                    "group": group.name,
                    "reconstruction": rid,
                    "candidate": todo[b],
                    "setting": label,
                    "mean_displacement_mm": res.mean_displacement_mm,
                    "cpu_seconds": res.cpu_seconds,
                    "wall_seconds": res.seconds,
                }
            for (_, b), message in failed.items():
                print(f"FAILED {label} {rid} -> {todo[b]}: {message}")
            print(
                f"{group.name} {rid}: {label} {len(results)} pairs in "
                f"{time.perf_counter() - start:.0f} s",
                flush=True,
            )
            save()


# -- agreement ------------------------------------------------------------------------------------
def agreement(pairs: list[dict], top: dict[tuple[str, str], list[str]]) -> dict[str, dict]:
    """Each setting against the reference over reconstructions whose k pairs both hold."""
    from scipy.stats import kendalltau, spearmanr

    values: dict[tuple[str, str, str], dict[str, float]] = defaultdict(dict)
    cpu: dict[str, list[float]] = defaultdict(list)
    wall: dict[str, list[float]] = defaultdict(list)
    for p in pairs:
        values[(p["group"], p["reconstruction"], p["setting"])][p["candidate"]] = p[
            "mean_displacement_mm"
        ]
        cpu[p["setting"]].append(p["cpu_seconds"])
        wall[p["setting"]].append(p["wall_seconds"])
    out = {}
    for label, _, _ in SETTINGS:
        row: dict = {
            "pairs": len(cpu[label]),
            "cpu_seconds_per_pair": float(np.nanmean(cpu[label])) if cpu[label] else None,
            "wall_seconds_per_pair": float(np.nanmean(wall[label])) if wall[label] else None,
        }
        same_top1, rank_same, taus, xs, ys, correct = [], [], [], [], [], []
        for (group, rid), cands in top.items():
            mine = values.get((group, rid, label), {})
            ref = values.get((group, rid, REFERENCE), {})
            if len(cands) < 2 or not all(c in mine and c in ref for c in cands):
                continue
            a = np.array([mine[c] for c in cands])
            r = np.array([ref[c] for c in cands])
            same_top1.append(cands[int(np.argmin(a))] == cands[int(np.argmin(r))])
            rank_same.append(float(np.mean(np.argsort(np.argsort(a)) == np.argsort(np.argsort(r)))))
            taus.append(float(kendalltau(a, r).statistic))
            xs.extend(a)
            ys.extend(r)
            if rid in cands:
                correct.append(cands[int(np.argmin(a))] == rid)
        row.update(
            reconstructions=len(same_top1),
            top1_agreement=float(np.mean(same_top1)) if same_top1 else None,
            spearman=float(spearmanr(xs, ys).statistic) if len(xs) > 2 else None,
            topk_rank_agreement=float(np.mean(rank_same)) if rank_same else None,
            topk_kendall=float(np.nanmean(taus)) if taus else None,
            top1_correct=int(np.sum(correct)),
            top1_correct_of=len(correct),
        )
        out[label] = row
    fast, greedy = (
        out["ants-fast"]["cpu_seconds_per_pair"],
        out["greedy-fast"]["cpu_seconds_per_pair"],
    )
    if fast and greedy:
        out["greedy-fast"]["cpu_speedup_vs_ants_fast"] = fast / greedy
    return out


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--study", help="a study folder with reconstructions and scores.csv")
    src.add_argument("--stand-ins", type=int, help="check on N ixi-dev stand-in reconstructions")
    ap.add_argument("--candidates", type=int, default=10, help="--stand-ins: candidate subjects")
    ap.add_argument("--runs", nargs="*", help="only runs whose name contains one of these")
    ap.add_argument("--folds", type=int, nargs="*", help="only these folds")
    ap.add_argument("--max-reconstructions", type=int, default=None, help="per (run, fold)")
    ap.add_argument("--top-k", type=int, default=5, help="SSIM top-k candidates per reconstruction")
    ap.add_argument("--threads", default="auto", help='pairs at once ("auto": one per core)')
    ap.add_argument("--out", default=str(RESULTS / "registration_backends.json"))
    args = ap.parse_args()
    workers = resolve_threads(args.threads)
    source = (
        str(Path(args.study).resolve())
        if args.study
        else f"stand-ins:{args.stand_ins}x{args.candidates}"
    )
    out = Path(args.out)
    done, top = load_partial(out, source)
    groups = study_groups(args) if args.study else stand_in_groups(args)
    if not groups:
        raise SystemExit("no reconstructions with SSIM scores matched --runs/--folds")
    top.update({(g.name, rid): g.top[rid] for g in groups for rid in g.reconstructions})
    names = sorted({name for name, _ in top})  # this run's groups and earlier runs' ones
    started = time.strftime("%Y-%m-%dT%H:%M:%S")

    def payload(complete: bool) -> dict:
        from inversion_audit.metrics.registration_greedy import (
            GREEDY_PRESETS,
            greedy_commands,
            greedy_version,
        )

        pairs = sorted(
            done.values(),
            key=lambda p: (p["group"], p["reconstruction"], p["candidate"], p["setting"]),
        )
        by_group = {
            name: agreement(
                [p for p in pairs if p["group"] == name],
                {k: v for k, v in top.items() if k[0] == name},
            )
            for name in names
        }
        return {
            "benchmark": "registration_backends",
            "source": source,
            "reconstructions": "study"
            if args.study
            else "stand-ins (blur + noise), not a benchmark",
            "complete": complete,
            "command": " ".join(["benchmarks/bench_registration_backends.py", *sys.argv[1:]]),
            "python": sys.version.split()[0],
            "machine": platform.machine(),
            "cpus": os.cpu_count(),
            "workers": workers,
            "started": started,
            "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "top_k": args.top_k,
            "settings": {label: {"registration": b, "preset": p} for label, b, p in SETTINGS},
            "greedy": {
                "version": greedy_version(),
                "options": GREEDY_PRESETS["fast"],
                "commands": {g.name: list(greedy_commands("fast", g.shape)) for g in groups},
            },
            "mask": sorted({g.mask_source for g in groups}),
            "groups": by_group,
            "overall": agreement(pairs, top),
            "candidates": {f"{g}|{r}": c for (g, r), c in sorted(top.items())},
            "pairs": pairs,
        }

    def save() -> None:
        atomic_write_json(out, payload(False))

    for group in groups:
        print(
            f"{group.name}: {len(group.reconstructions)} reconstructions x top-{args.top_k}",
            flush=True,
        )
        register_group(group, done, workers, save)
    final = payload(True)
    atomic_write_json(out, final)
    rows = [
        {
            "group": name,
            "setting": label,
            **{k: v for k, v in row.items() if k not in ("top1_correct_of",)},
        }
        for name, table in [*final["groups"].items(), ("overall", final["overall"])]
        for label, row in table.items()
    ]
    cols = ["group", "setting", "pairs", "reconstructions", "top1_agreement", "spearman",
            "topk_rank_agreement", "topk_kendall", "cpu_seconds_per_pair", "top1_correct"]  # fmt: skip
    print_table([{c: ("-" if r.get(c) is None else r.get(c)) for c in cols} for r in rows], cols)
    greedy = final["overall"]["greedy-fast"]
    if greedy["top1_agreement"] is not None:
        verdict = "at least" if greedy["top1_agreement"] >= 0.9 else "below"
        print(f"greedy top-1 agreement with paper {greedy['top1_agreement']:.2f}: {verdict} 0.9")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
