"""Child-process entry for one ANTs registration (``python -m inversion_audit.metrics._ants_subprocess``).

ANTsPy holds the GIL for the whole registration, which starves Dask heartbeats and
GUI threads of the calling process; running it here keeps the caller responsive
and turns an ANTs crash into an error instead of a dead process.

Usage: ``python -m inversion_audit.metrics._ants_subprocess IN.npz OUT.npz PRESET``. The
child ends when its parent dies (:func:`~inversion_audit.children.die_with_parent`).
"""

from __future__ import annotations

import sys
import time

import numpy as np

from ..children import die_with_parent
from ..io import Volume
from .deformation import _register


def main(argv: list[str]) -> int:
    die_with_parent()  # a killed study must not leave registrations running
    src, dst, preset = argv
    with np.load(src) as z:
        moving = Volume(z["moving"], z["moving_affine"])
        fixed = Volume(z["fixed"], z["fixed_affine"])
    start = time.perf_counter()
    magnitude, warped, displacement = _register(moving, fixed, preset)
    np.savez(
        dst,
        magnitude=magnitude,
        warped=warped,
        displacement=displacement,
        seconds=np.float64(time.perf_counter() - start),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
