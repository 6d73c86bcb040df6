"""Child-process entry for one registration (``python -m inversion_audit.metrics._ants_subprocess``).

ANTsPy and greedy hold the GIL for the whole registration, which starves Dask heartbeats and
GUI threads of the calling process; running it here keeps the caller responsive
and turns a crash into an error instead of a dead process.

Usage: ``python -m inversion_audit.metrics._ants_subprocess IN.npz OUT.npz PRESET
[BACKEND THREADS SEED]`` (backend ``ants`` by default). The child ends when its parent dies
(:func:`~inversion_audit.children.die_with_parent`).
"""

from __future__ import annotations

import sys
import time

import numpy as np

from ..children import die_with_parent
from ..io import Volume
from .deformation import register_volumes


def main(argv: list[str]) -> int:
    die_with_parent()  # a killed study must not leave registrations running
    src, dst, preset, *rest = argv
    registration = rest[0] if rest else "ants"
    threads, seed = (int(rest[1]), int(rest[2])) if len(rest) >= 3 else (1, 0)
    with np.load(src) as z:
        moving = Volume(z["moving"], z["moving_affine"])
        fixed = Volume(z["fixed"], z["fixed_affine"])
    start, cpu_start = time.perf_counter(), time.process_time()
    magnitude, warped, displacement = register_volumes(
        moving, fixed, preset, registration, threads, seed
    )
    np.savez(
        dst,
        magnitude=magnitude,
        warped=warped,
        displacement=displacement,
        seconds=np.float64(time.perf_counter() - start),
        cpu_seconds=np.float64(time.process_time() - cpu_start),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
