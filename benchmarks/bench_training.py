"""Training throughput of the target networks and the inversion decoder.

For each architecture (U-Net, SegNet) and grid (64^3, 96x112x96) it times optimiser
steps of target training (Dice + CE) and of inversion-decoder training (bottleneck
threat model, latents precomputed as ``train_inversion`` does), each in a fresh process
so that peak memory is per case. The reference is the same target step in PyTorch's
default (contiguous) memory layout; training uses channels-last on CPU.

Usage: .venv/bin/python benchmarks/bench_training.py [--steps 2] [--threads 2] [--depth 3] [--filters 8]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

from _common import peak_rss_mb, print_table, write_results

SHAPES = {"64^3": (64, 64, 64), "96x112x96": (96, 112, 96)}
PHASES = ("target", "target-contiguous", "inversion")


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def run_case(
    arch: str,
    shape: tuple[int, int, int],
    phase: str,
    steps: int,
    depth: int,
    filters: int,
    batch: int,
) -> dict:
    """Time ``steps`` optimiser steps after one warm-up step (runs inside the child process)."""
    import torch

    from inversion_audit.attack import build_inversion_decoder
    from inversion_audit.models import build_target_network
    from inversion_audit.training.loop import memory_format
    from inversion_audit.training.losses import InversionLoss, segmentation_loss

    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    fmt = torch.contiguous_format if phase == "target-contiguous" else memory_format(dev)
    torch.manual_seed(0)
    target = build_target_network(arch, n_classes=6, depth=depth, base_filters=filters).to(
        dev, memory_format=fmt
    )
    x = torch.rand(batch, 1, *shape, device=dev).contiguous(memory_format=fmt)
    y = torch.randint(0, 6, (batch, 1, *shape), device=dev)
    if phase == "inversion":
        target.eval().requires_grad_(False)
        with torch.no_grad():
            latent = target.encode(x).for_threat_model("bottleneck")
        model = build_inversion_decoder(target, "bottleneck").to(dev, memory_format=fmt)
        loss_fn = InversionLoss()

        def loss() -> torch.Tensor:
            return loss_fn(model(latent), x)
    else:
        model, loss_fn = target, segmentation_loss()

        def loss() -> torch.Tensor:
            return loss_fn(model(x), y)

    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        loss().backward()
        optimizer.step()

    step()
    if dev.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    wall, cpu = time.perf_counter(), _cpu()
    for _ in range(steps):
        step()
    if dev.type == "cuda":
        torch.cuda.synchronize()
    wall, cpu = time.perf_counter() - wall, _cpu() - cpu
    voxels = batch * shape[0] * shape[1] * shape[2]
    peak = torch.cuda.max_memory_allocated() / 2**20 if dev.type == "cuda" else peak_rss_mb()
    return {
        "s_per_step": wall / steps,
        "cpu_s_per_step": cpu / steps,
        "steps_per_s": steps / wall,
        "voxels_per_s": voxels * steps / wall,
        "peak_mb": peak,
        "memory": "cuda max allocated" if dev.type == "cuda" else "peak RSS",
        "device": str(dev),
        "threads": torch.get_num_threads(),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--depth", type=int, default=3)
    ap.add_argument("--filters", type=int, default=8)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--archs", nargs="+", default=["unet", "segnet"])
    ap.add_argument("--shapes", nargs="+", default=list(SHAPES))
    ap.add_argument("--case", help=argparse.SUPPRESS)  # internal: run one case and print JSON
    args = ap.parse_args()
    if args.case:
        import torch

        torch.set_num_threads(args.threads)
        arch, shape_name, phase = args.case.split(":")
        out = run_case(
            arch, SHAPES[shape_name], phase, args.steps, args.depth, args.filters, args.batch
        )
        print(json.dumps(out))
        return
    rows = []
    for arch in args.archs:
        for shape_name in args.shapes:
            for phase in PHASES:
                cmd = [sys.executable, __file__, "--case", f"{arch}:{shape_name}:{phase}"]
                cmd += [
                    "--steps",
                    str(args.steps),
                    "--threads",
                    str(args.threads),
                    "--depth",
                    str(args.depth),
                ]
                cmd += ["--filters", str(args.filters), "--batch", str(args.batch)]
                res = json.loads(
                    subprocess.run(
                        cmd, check=True, capture_output=True, text=True
                    ).stdout.splitlines()[-1]
                )
                rows.append({"arch": arch, "grid": shape_name, "phase": phase, **res})
                print(
                    f"{arch} {shape_name} {phase}: {res['s_per_step']:.2f} s/step",
                    file=sys.stderr,
                    flush=True,
                )
    for r in rows:
        ref = next(
            o
            for o in rows
            if (o["arch"], o["grid"], o["phase"]) == (r["arch"], r["grid"], "target-contiguous")
        )
        r["speedup_vs_contiguous"] = ref["s_per_step"] / r["s_per_step"]
    with open("/proc/loadavg") as fh:
        load = fh.read().split()[:3]
    print_table(
        rows,
        [
            "arch",
            "grid",
            "phase",
            "s_per_step",
            "cpu_s_per_step",
            "steps_per_s",
            "voxels_per_s",
            "peak_mb",
            "speedup_vs_contiguous",
        ],
    )
    write_results(
        "training",
        {
            "settings": {
                k: getattr(args, k) for k in ("steps", "threads", "depth", "filters", "batch")
            },
            "load_average_after": load,
            "rows": rows,
        },
    )


if __name__ == "__main__":
    main()
