"""What DP-SGD costs in training time: one epoch of target training with and without Opacus.

For each architecture it trains the target for ``--epochs`` epochs on ``--subjects`` random
volumes of ixi-dev's skull-stripped grid (96x112x96), with the target settings of
``configs/ixi-dev-defences.toml`` (64^3 crops, batch 2, 2 crops per subject and epoch):
once plainly (the reference, in the same run) and once with the ``dp-sgd`` defence
(Opacus, GroupNorm, per-subject clipping, Poisson sampling). Each case runs in a fresh
process, so peak memory is per case. Prints seconds per epoch and per step, peak memory,
the DP/plain time ratio and ε.

Usage: .venv/bin/python benchmarks/bench_dp_training.py [--archs unet segnet] [--epochs 1]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import subprocess
import sys
import time

from _common import ROOT, peak_rss_mb, print_table, write_results

CONFIG = ROOT / "configs" / "ixi-dev-defences.toml"
GRID = (96, 112, 96)


def run_case(arch: str, dp: bool, epochs: int, subjects: int, noise: float) -> dict:
    """Train one target (runs inside the child process)."""
    import tomllib

    import numpy as np

    from inversion_audit.training import train_target
    from inversion_audit.training.config import TargetConfig
    from inversion_audit.training.dp import DPConfig, with_dp

    raw = tomllib.loads(CONFIG.read_text())["target"]
    keep = {f.name for f in dataclasses.fields(TargetConfig)} - {"label_map"}
    settings = {k: (tuple(v) if isinstance(v, list) else v) for k, v in raw.items() if k in keep}
    tcfg = TargetConfig(arch=arch, **{**settings, "epochs": epochs, "n_classes": 6})
    if dp:
        tcfg = with_dp(tcfg, DPConfig(noise_multiplier=noise, max_grad_norm=1.0, delta=1e-3))
    rng = np.random.default_rng(0)
    images = [rng.random(GRID, dtype=np.float32) for _ in range(subjects)]
    labels = [rng.integers(0, 6, GRID).astype(np.int16) for _ in range(subjects)]
    start = time.perf_counter()
    _, history = train_target(images, labels, tcfg, device="cpu")
    seconds = time.perf_counter() - start
    privacy = getattr(history, "privacy", None) or {}
    steps = privacy.get("steps") or epochs * subjects * tcfg.patches_per_subject // tcfg.batch_size
    return {
        "s_per_epoch": seconds / epochs,
        "s_per_step": seconds / steps,
        "steps": steps,
        "peak_mb": peak_rss_mb(),
        "epsilon": privacy.get("epsilon"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archs", nargs="+", default=["unet", "segnet"])
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--subjects", type=int, default=10)
    parser.add_argument("--noise", type=float, default=1.0, help="DP noise multiplier")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--case", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        import torch

        torch.set_num_threads(args.threads)
        arch, mode = args.case.split(":")
        out = run_case(arch, mode == "dp-sgd", args.epochs, args.subjects, args.noise)
        print(json.dumps(out))
        return
    rows = []
    for arch in args.archs:
        for mode in ("plain", "dp-sgd"):
            cmd = [sys.executable, __file__, "--case", f"{arch}:{mode}"]
            cmd += ["--epochs", str(args.epochs), "--subjects", str(args.subjects)]
            cmd += ["--noise", str(args.noise), "--threads", str(args.threads)]
            proc = subprocess.run(cmd, check=True, capture_output=True, text=True)
            res = json.loads(proc.stdout.splitlines()[-1])
            rows.append({"arch": arch, "training": mode, **res})
            print(f"{arch} {mode}: {res['s_per_epoch']:.1f} s/epoch", file=sys.stderr, flush=True)
    for r in rows:
        ref = next(o for o in rows if (o["arch"], o["training"]) == (r["arch"], "plain"))
        r["time_vs_plain"] = r["s_per_epoch"] / ref["s_per_epoch"]
    with open("/proc/loadavg") as fh:
        load = fh.read().split()[:3]
    columns = ["arch", "training", "s_per_epoch", "s_per_step", "steps", "peak_mb"]
    print_table(rows, [*columns, "time_vs_plain", "epsilon"])
    write_results(
        "dp_training",
        {
            "settings": {k: getattr(args, k) for k in ("epochs", "subjects", "noise", "threads")},
            "config": str(CONFIG.relative_to(ROOT)),
            "load_average_after": load,
            "rows": rows,
        },
    )


if __name__ == "__main__":
    main()
