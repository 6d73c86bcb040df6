"""Many registrations on this machine: one ITK thread each, several at once.

A registration with one ITK thread and a fixed seed is bit-reproducible; with two threads
the affine stage's metric varies from call to call (a pair's mean displacement moved from
4.09 to 5.16 mm between two runs, docs/benchmarks.md). Two single-threaded registrations in
parallel child processes are as fast on 2 cores as one two-threaded registration at a time,
so the study's scoring runs them this way. greedy (``registration="greedy"``) runs the same
way: one ITK thread (``-threads 1``) and a fixed seed per registration.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from functools import partial

import numpy as np

from ..io import Volume
from ..progress import ProgressCallback, report
from .deformation import DeformationResult, Preset, deformation
from .registration import check_registration

__all__ = ["register_pairs"]


def register_pairs(
    moving: Sequence[Volume],
    fixed: Sequence[Volume],
    pairs: Sequence[tuple[int, int]],
    fixed_masks: Sequence[np.ndarray | None] | None = None,
    preset: Preset = "fast",
    workers: int = 1,
    seed: int = 0,
    cache: bool = True,
    progress: ProgressCallback | None = None,
    stage: str = "deformation",
    isolated: bool | None = None,
    registration: str = "ants",
) -> tuple[dict[tuple[int, int], DeformationResult], dict[tuple[int, int], str]]:
    """Register ``moving[a]`` to ``fixed[b]`` for every ``(a, b)`` in ``pairs``.

    Each registration uses one ITK thread and ``seed``, so results do not depend on
    ``workers``. ``isolated`` (default: ``workers > 1``) runs each in a fresh child process
    (see ``deformation(isolated=True)``), ``workers`` at once. In this process, ITK keeps
    the thread count of its first registration here, so one thread is guaranteed only
    when that was one too. Returns the results and, separately, the pairs whose
    registration failed (message per pair); ``progress`` is called after each pair and
    may raise to cancel (pending pairs are dropped). ``registration`` picks the backend
    (``"ants"`` or ``"greedy"``, :data:`~.registration.REGISTRATION_BACKENDS`); an unknown one,
    or greedy with the ``paper`` preset, is refused before any registration.
    """
    check_registration(registration, preset)
    masks = list(fixed_masks) if fixed_masks is not None else [None] * len(fixed)
    isolated = workers > 1 if isolated is None else isolated

    def one(pair: tuple[int, int]) -> DeformationResult:
        a, b = pair
        return deformation(
            moving[a],
            fixed[b],
            fixed_mask=masks[b],
            preset=preset,
            cache=cache,
            threads=1,
            seed=seed,
            isolated=isolated,
            registration=registration,
        )

    results: dict[tuple[int, int], DeformationResult] = {}
    failed: dict[tuple[int, int], str] = {}

    def collect(pair: tuple[int, int], get) -> None:
        try:
            results[pair] = get()
        except RuntimeError as exc:  # one failed registration must not lose the others
            failed[pair] = str(exc)
        report(progress, len(results) + len(failed), len(pairs), stage)

    if workers <= 1:
        for pair in pairs:
            collect(pair, partial(one, pair))
        return results, failed
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="registration")
    try:
        running: dict[Future, tuple[int, int]] = {pool.submit(one, p): p for p in pairs}
        while running:
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                collect(running.pop(future), future.result)
    finally:  # on cancel, drop the pairs not started; running ones finish in their children
        pool.shutdown(wait=False, cancel_futures=True)
    return results, failed
