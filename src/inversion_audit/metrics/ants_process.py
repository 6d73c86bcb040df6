"""Where a registration runs: in this process, or in a fresh child process.

ITK fixes its thread count at its first use in a process, and ANTsPy (like greedy) holds the
GIL for a whole registration. An ANTs registration that asks for a thread count ITK here does
not have, or any registration that must not block the caller's threads, runs in a child Python
process (:mod:`._ants_subprocess`, for either backend), which dies with its parent.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from ..children import child_env, scratch_dir
from ..io import Volume
from .registration import backend_label

__all__ = ["register_isolated", "run_here", "set_itk_threads"]


def set_itk_threads(threads: int | None) -> None:
    """Set ``ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS`` (``None`` leaves it as is).

    ITK reads it when ANTs first runs in a process, so call this before the first
    registration (distributed workers do it at start-up).
    """
    if threads:
        os.environ["ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"] = str(int(threads))


#: ITK's thread setting at this process's first in-process registration ("" = ITK's default):
#: ITK keeps it for the life of the process, whatever the variable says later
_ITK_THREADS_IN_PROCESS: str | None = None


def run_here(threads: int | None) -> bool:
    """Whether a registration asking for ``threads`` may run in this process, and if so note
    the thread count ITK will keep here.

    ITK fixes its thread count at its first use in a process. A registration asking for a
    count runs here only when this process's ITK is known to have it: the first registration
    here, before ANTs was used for anything else (N4 also fixes it), or a later one with the
    same count. Otherwise it goes to a fresh child process, so that one ITK thread, hence a
    reproducible result, holds wherever it is asked for.
    """
    global _ITK_THREADS_IN_PROCESS
    setting = os.environ.get("ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS", "")
    if _ITK_THREADS_IN_PROCESS is None:
        if threads and "ants" in sys.modules:  # ITK may already run with another count here
            return False
        _ITK_THREADS_IN_PROCESS = setting
        return True
    return not threads or _ITK_THREADS_IN_PROCESS == str(int(threads))


def register_isolated(
    moving: Volume,
    fixed: Volume,
    preset: str,
    registration: str = "ants",
    threads: int = 1,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, float, float]:
    """The backend's registration (``deformation.register_volumes``) in a child Python process;
    return (magnitude, warped, field, seconds, CPU seconds). ``threads`` and ``seed`` reach
    greedy's command line; ANTs reads its own from the environment the child inherits."""
    import inversion_audit

    env = child_env()  # the child dies with this process (see inversion_audit.children)
    package_root = str(Path(inversion_audit.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
    with scratch_dir("ants") as tmp:
        src, dst = os.path.join(tmp, "in.npz"), os.path.join(tmp, "out.npz")
        np.savez(
            src,
            moving=np.asarray(moving.array, dtype=np.float32),
            moving_affine=np.asarray(moving.affine, dtype=np.float64),
            fixed=np.asarray(fixed.array, dtype=np.float32),
            fixed_affine=np.asarray(fixed.affine, dtype=np.float64),
        )
        cmd = [
            sys.executable,
            "-m",
            "inversion_audit.metrics._ants_subprocess",
            src,
            dst,
            preset,
            registration,
            str(int(threads)),
            str(int(seed)),
        ]
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
        if proc.returncode != 0 or not os.path.exists(dst):
            tail = " | ".join(proc.stderr.strip().splitlines()[-3:])
            raise RuntimeError(
                f"{backend_label(registration)} registration of {moving.name} to "
                f"{fixed.name} failed in a subprocess "
                f"(exit code {proc.returncode}): {tail}"
            )
        with np.load(dst) as z:
            return (
                z["magnitude"],
                z["warped"],
                z["displacement"],
                float(z["seconds"]),
                float(z["cpu_seconds"]),
            )
