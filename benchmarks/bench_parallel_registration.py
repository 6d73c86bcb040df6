"""Time 4 real ixi-dev registrations: one at a time with 2 ITK threads (seq2) vs two at once
in child processes with 1 thread each (par1). Usage: python bench_parallel_registration.py seq2|par1"""

import sys
import time

from _common import ROOT, write_results

from inversion_audit.io import read_volume
from inversion_audit.metrics import deformation, register_pairs

study = ROOT / "studies" / "ixi-dev"
run = "unet_skull-stripped_bottleneck"
recs = sorted((study / "reconstructions" / run).glob("*_recon_pre.nii.gz"))[:2]
cands = sorted(
    p for p in (study / "preprocessed" / "skull-stripped").glob("*.nii.gz") if "_seg" not in p.name
)[:2]
pairs = [(read_volume(r), read_volume(c)) for r in recs for c in cands]  # 4 pairs
mode = sys.argv[1]
t = time.perf_counter()
if mode == "seq2":
    res = [
        deformation(m, f, preset="fast", cache=False, threads=2, seed=0).mean_displacement_mm
        for m, f in pairs
    ]
elif mode == "par1":  # the study's way: register_pairs, one thread each, two at once
    moving, fixed = [m for m, _ in pairs], [f for _, f in pairs]
    done, _ = register_pairs(
        moving, fixed, [(k, k) for k in range(len(pairs))], workers=2, cache=False
    )
    res = [done[(k, k)].mean_displacement_mm for k in range(len(pairs))]
else:
    raise SystemExit(f"mode must be seq2 or par1, got {mode!r}")
print(mode, "4 pairs: %.1f s" % (time.perf_counter() - t), [round(x, 4) for x in res])
write_results(
    f"parallel_registration_{mode}",
    {"mode": mode, "seconds": time.perf_counter() - t, "mean_displacement_mm": res},
)
