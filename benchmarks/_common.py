"""Shared helpers for benchmark scripts: timing, peak memory, tables and JSON output."""

from __future__ import annotations

import platform
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
IXI_DEV = ROOT.parent / "shared" / "data" / "ixi-dev"
RESULTS = ROOT / "benchmarks" / "results"


def peak_rss_mb() -> float:
    """Peak resident set size of this process in MiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class Timer:
    def __enter__(self) -> Timer:
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        self.seconds = time.perf_counter() - self.start


def print_table(rows: list[dict], columns: list[str] | None = None) -> None:
    """Print rows as a Markdown table."""
    if not rows:
        return
    columns = columns or list(rows[0])
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    for r in rows:
        cells = [f"{r[c]:.4g}" if isinstance(r[c], float) else str(r[c]) for c in columns]
        print("| " + " | ".join(cells) + " |")


def write_results(name: str, payload: dict) -> Path:
    """Write ``benchmarks/results/<name>.json`` with machine information."""
    import os

    from inversion_audit.io import atomic_write_json

    payload = {
        "benchmark": name,
        "python": sys.version.split()[0],
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
        **payload,
    }
    path = RESULTS / f"{name}.json"
    atomic_write_json(path, payload)
    print(f"wrote {path}")
    return path
