"""Per-image cost of the target network at batch 1 vs batch 2 on CPU (forward and training step).

PyTorch's CPU convolution picks oneDNN (mkldnn) only when the batch is > 1 or the first
four dimensions of the input are large (``N*C*D*H > 20480``); a batch of one small
volume falls back to ``slow_conv3d``. This measures what that costs per image, on the
demo grid (32x40x32) and the ixi-dev grid (96x112x96), in one run.

Usage: .venv/bin/python benchmarks/bench_batch_size.py [--threads 2] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import time

import torch
from _common import print_table, write_results

from inversion_audit.models import build_target_network


def per_image_seconds(
    arch: str, shape: tuple[int, int, int], batch: int, train: bool, repeats: int
) -> float:
    """Mean seconds per image of a forward pass (or an Adam step) in channels-last layout."""
    torch.manual_seed(0)
    model = build_target_network(arch, n_classes=6, depth=3, base_filters=8)
    model = model.to(memory_format=torch.channels_last_3d).train(train)
    x = torch.randn(batch, 1, *shape).contiguous(memory_format=torch.channels_last_3d)
    optimizer = torch.optim.Adam(model.parameters())

    def once() -> None:
        if train:
            optimizer.zero_grad()
            model(x).float().mean().backward()
            optimizer.step()
        else:
            with torch.inference_mode():
                model(x)

    once()  # warm-up
    start = time.perf_counter()
    for _ in range(repeats):
        once()
    return (time.perf_counter() - start) / repeats / batch


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    load = os.getloadavg()[0]
    rows = []
    for arch in ("unet", "segnet"):
        for shape in ((32, 40, 32), (96, 112, 96)):
            for train in (False, True):
                one = per_image_seconds(arch, shape, 1, train, args.repeats)
                two = per_image_seconds(arch, shape, 2, train, args.repeats)
                rows.append(
                    {
                        "arch": arch,
                        "grid": "x".join(map(str, shape)),
                        "phase": "train step" if train else "forward",
                        "s/image batch 1": one,
                        "s/image batch 2": two,
                        "batch 1 / batch 2": one / two,
                    }
                )
                print_table(rows[-1:])
    print_table(rows)
    print(f"threads {args.threads}; load average at start {load:.1f}")
    write_results(
        "batch_size",
        {
            "threads": args.threads,
            "repeats": args.repeats,
            "load_average_at_start": load,
            "rows": rows,
        },
    )


if __name__ == "__main__":
    main()
