"""Time the synthetic sample cohort: cold generation (CLI), cache hit, and reading it (reference).

Usage: .venv/bin/python benchmarks/bench_sample_cohort.py [--n 40] [--workers 2 1]
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

from _common import Timer, peak_rss_mb, print_table, write_results

from inversion_audit.data import load_cohort
from inversion_audit.io import read_labels, read_volume


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def _run_cli(out: Path, n: int, workers: int) -> None:
    code = (
        "import sys; from inversion_audit.sample_data import generate_sample_cohort;"
        f"print(generate_sample_cohort({str(out)!r}, n_subjects={n}, workers={workers}))"
    )
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=40)
    ap.add_argument("--workers", type=int, nargs="+", default=[2])
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-sample-"))
    os.environ["INVERSION_AUDIT_CACHE"] = str(tmp / "cache")
    load_before = os.getloadavg()[0]

    rows = []
    out = tmp / "cohort"
    for workers in args.workers:
        out = tmp / f"cohort_w{workers}"
        cpu0 = _children_cpu()
        with (
            Timer() as t_cold
        ):  # fresh process: includes importing nilearn and loading the template
            _run_cli(out, args.n, workers)
        rows.append(
            {
                "step": f"generate, cold process, {workers} worker(s)",
                "seconds": t_cold.seconds,
                "cpu seconds": _children_cpu() - cpu0,
            }
        )
        with Timer() as t_hit:
            _run_cli(out, args.n, workers)
        rows.append(
            {
                "step": "cache hit (process start included)",
                "seconds": t_hit.seconds,
                "cpu seconds": float("nan"),
            }
        )
    cohort = load_cohort(out)
    with Timer() as t_read:
        for s in cohort:
            read_volume(s.image)
            read_labels(s.labels)
            read_labels(s.mask)
    rows.insert(
        0,
        {
            "step": "read T1+seg+mask (reference)",
            "seconds": t_read.seconds,
            "cpu seconds": float("nan"),
        },
    )
    for r in rows:
        r["ratio"] = r["seconds"] / t_read.seconds
    size_mb = sum(p.stat().st_size for p in out.iterdir()) / 2**20
    print(
        f"{args.n} subjects, {size_mb:.1f} MiB on disk, load average before: {load_before:.2f}, cpus: {os.cpu_count()}"
    )
    print_table(rows, ["step", "seconds", "cpu seconds", "ratio"])
    write_results(
        "sample_cohort",
        {
            "n_subjects": args.n,
            "rows": rows,
            "size_mb": size_mb,
            "load_average_before": load_before,
            "peak_rss_mb": peak_rss_mb(),
        },
    )


if __name__ == "__main__":
    main()
