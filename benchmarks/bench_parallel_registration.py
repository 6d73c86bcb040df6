"""Time 4 real ixi-dev registrations: one at a time with 2 ITK threads (seq2) vs two at once
in child processes with 1 thread each (par1). Usage: python bench_parallel_registration.py seq2|par1"""

import sys
import time
from concurrent.futures import ThreadPoolExecutor

from _common import ROOT, write_results

from inversion_audit.io import read_volume
from inversion_audit.metrics import deformation

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
elif mode == "par1":
    with ThreadPoolExecutor(2) as ex:
        res = list(
            ex.map(
                lambda p: (
                    deformation(
                        p[0], p[1], preset="fast", cache=False, threads=1, seed=0, isolated=True
                    ).mean_displacement_mm
                ),
                pairs,
            )
        )
elif mode == "seq1iso":
    res = [
        deformation(
            m, f, preset="fast", cache=False, threads=1, seed=0, isolated=True
        ).mean_displacement_mm
        for m, f in pairs
    ]
print(mode, "4 pairs: %.1f s" % (time.perf_counter() - t), [round(x, 4) for x in res])
write_results(
    f"parallel_registration_{mode}",
    {"mode": mode, "seconds": time.perf_counter() - t, "mean_displacement_mm": res},
)
