"""Build the bundled demo study (napari: File › Open Sample › Inversion Audit: demo study).

`make demo` runs ``configs/demo.toml`` at 6 mm (32x40x32, a brain about 25 voxels across) to
keep its 10-minute budget. The bundled sample is computed offline instead, from
``configs/demo-bundled.toml``: the same protocol on the same synthetic cohort at 3 mm. This
script runs that study (``inversion-audit run``, resumed when interrupted; skipped when every
stage is done and the report written), bundles it with ``sample_data/build_demo_study.py``
into TARGET, prints grid, voxel size, bundle size and each run's top-1 identification, and
writes ``benchmarks/results/demo_bundle.json``.

Usage:
    .venv/bin/python benchmarks/build_demo_bundle.py [TARGET] [--study DIR] [--config TOML]
    # then swap it in:
    rm -rf sample_data/demo_study && cp -r TARGET sample_data/demo_study

Defaults: TARGET /work/demo-bundled/bundle, --study /work/demo-bundled/study. Run it with
``nice -n 10`` on a shared machine; re-running with the same --study resumes the study.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import resource
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

from _common import RESULTS, ROOT, Timer, print_table, write_results

STAGING = Path("/work/demo-bundled")
METRICS = ("ssim", "correlation", "deformation", "ssim_brain", "fused")


def _load_builder():
    """``sample_data/build_demo_study.py`` as a module (it is a script, not a package module)."""
    path = ROOT / "sample_data" / "build_demo_study.py"
    spec = importlib.util.spec_from_file_location("build_demo_study", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def study_finished(config_path: Path, study: Path) -> bool:
    """Every stage done (same keys as a real run would compute) and the report written."""
    if not (study / "report.json").is_file() or not (study / "stages").is_dir():
        return False
    from inversion_audit.study.config import load_study_config
    from inversion_audit.study.runner import plan_study

    plan = plan_study(load_study_config(config_path), study)
    return all(done for _, done in plan)


def run_study(config_path: Path, study: Path) -> tuple[list[str], float, float]:
    """``inversion-audit run CONFIG --out STUDY --quiet`` (resumes): its command, wall s and
    CPU s (user + system, its child processes included: on a shared machine the CPU time
    says more than the wall time)."""
    cli = Path(sys.executable).with_name("inversion-audit")
    command = [str(cli), "run", str(config_path), "--out", str(study), "--quiet"]
    print("running:", " ".join(command), flush=True)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    with Timer() as t:
        subprocess.run(command, check=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return command, t.seconds, cpu


def _earlier_run(study: Path) -> tuple[float | None, float | None]:
    """The wall and CPU seconds that an earlier run of this script measured for this very
    study (same folder and start time in ``provenance.json``), else ``None``."""
    previous = RESULTS / "demo_bundle.json"
    try:
        old = json.loads(previous.read_text())
        started = json.loads((study / "provenance.json").read_text()).get("started")
    except (OSError, ValueError):
        return None, None
    if old.get("study") != str(study) or old.get("study_started") != started:
        return None, None
    return old.get("study_run_here_s"), old.get("study_run_here_cpu_s")


def stage_times(provenance: dict) -> dict:
    """Per-stage wall seconds summed by kind (target, inversion, ...) and per run kind."""
    seconds = provenance.get("stage_seconds", {})
    by_kind: dict[str, float] = defaultdict(float)
    by_stage: dict[str, list[float]] = defaultdict(list)
    for name, s in seconds.items():
        kind = name.rsplit("/", 1)[-1] if "/" in name else name
        if name.startswith("preprocess/"):
            kind = "preprocess"
        by_kind[kind] += s
        parts = name.split("/")
        if len(parts) == 3:  # fold<k>/<run>/<stage>
            by_stage[f"{parts[1]}/{parts[2]}"].append(s)
    per_run = {
        k: {"folds": len(v), "mean_s": sum(v) / len(v), "min_s": min(v), "max_s": max(v)}
        for k, v in sorted(by_stage.items())
    }
    return {"by_kind_s": dict(sorted(by_kind.items())), "per_run_stage": per_run}


def identification(report: dict) -> dict:
    """Each run's members' top-1 (of n) per metric, the non-members' by SSIM, own SSIM and Dice."""
    out = {}
    for run, r in report["runs"].items():
        members = {
            m: {"top1": r["table3"][m]["top1"], "n": r["table3"][m]["n"]}
            for m in METRICS
            if m in r.get("table3", {})
        }
        row = {
            "members": members,
            "ssim_own_mean": r["table3"]["ssim"].get("own_mean"),
            "ssim_others_mean": r["table3"]["ssim"].get("others_mean"),
            "dice": r.get("dice"),
        }
        ssim = report.get("membership", {}).get(run, {}).get("metrics", {}).get("ssim")
        if ssim:
            row["nonmembers_ssim"] = {
                "top1": ssim["nonmembers"]["top1"],
                "n": ssim["nonmembers"]["n"],
            }
        out[run] = row
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("target", nargs="?", default=str(STAGING / "bundle"), help="bundle folder")
    ap.add_argument("--study", default=str(STAGING / "study"), help="study folder (resumed)")
    ap.add_argument("--config", default=str(ROOT / "configs" / "demo-bundled.toml"))
    args = ap.parse_args()
    config_path, study, target = Path(args.config), Path(args.study), Path(args.target)

    run_command, run_seconds, run_cpu = None, None, None
    if study_finished(config_path, study):
        print(f"{study}: finished, not rerun")
        run_seconds, run_cpu = _earlier_run(study)
    else:
        run_command, run_seconds, run_cpu = run_study(config_path, study)
        if not study_finished(config_path, study):
            raise SystemExit(f"{study}: the study did not finish; re-run this script to resume")

    with Timer() as t:
        _load_builder().build(study, target)
    size = sum(p.stat().st_size for p in target.rglob("*") if p.is_file())
    n_files = sum(1 for p in target.rglob("*") if p.is_file())
    trees = {
        p.name: round(sum(f.stat().st_size for f in p.rglob("*") if f.is_file()) / 1e6, 2)
        for p in sorted(target.iterdir())
        if p.is_dir()
    }

    from inversion_audit.study.index import StudyIndex

    index = StudyIndex.open(target)  # the bundle opens as a study
    config = index.config()
    pre = config.preprocess_config(config.variants[0])
    provenance = json.loads((study / "provenance.json").read_text())
    report = json.loads((study / "report.json").read_text())
    ident = identification(report)
    times = stage_times(provenance)

    rows = []
    for run, r in ident.items():
        ssim = r["members"]["ssim"]
        non = r.get("nonmembers_ssim", {})
        rows.append(
            {
                "run": run,
                "grid": "x".join(map(str, pre.shape)),
                "voxel mm": "x".join(f"{s:g}" for s in pre.spacing),
                "bundle MB": round(size / 1e6, 2),
                "top-1 SSIM (members)": f"{ssim['top1']}/{ssim['n']}",
                "top-1 SSIM (non-members)": f"{non['top1']}/{non['n']}" if non else "-",
                "own SSIM": round(r["ssim_own_mean"], 3),
            }
        )
    print_table(rows)
    print()
    print_table(
        [{"stage kind": k, "wall s (all folds and runs)": v} for k, v in times["by_kind_s"].items()]
    )
    print(
        f"\ntotal_stage_seconds {provenance.get('total_stage_seconds')}; "
        f"started {provenance.get('started')}, finished {provenance.get('finished')}"
    )

    write_results(
        "demo_bundle",
        {
            "command": " ".join(["benchmarks/build_demo_bundle.py", *sys.argv[1:]]),
            "study_command": (
                f"inversion-audit run {os.path.relpath(config_path, ROOT)} --out {study} --quiet"
            ),
            "study": str(study),
            "study_run_here_s": run_seconds,
            "study_run_here_cpu_s": run_cpu,
            "study_ran_command": run_command is not None,
            "swap_in": f"rm -rf sample_data/demo_study && cp -r {target} sample_data/demo_study",
            "config": os.path.relpath(config_path, ROOT),
            "grid": list(pre.shape),
            "voxel_mm": list(pre.spacing),
            "bundle": str(target),
            "bundle_mb": round(size / 1e6, 3),
            "bundle_files": n_files,
            "bundle_trees_mb": trees,
            "bundle_build_s": round(t.seconds, 1),
            "study_started": provenance.get("started"),
            "study_finished": provenance.get("finished"),
            "total_stage_seconds": provenance.get("total_stage_seconds"),
            "invocations": len(provenance.get("invocations", [])),
            "stage_seconds_by_kind": times["by_kind_s"],
            "stage_seconds_per_run": times["per_run_stage"],
            "identification": ident,
            "load_average_at_end": os.getloadavg()[0],
            "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
        },
    )


if __name__ == "__main__":
    main()
