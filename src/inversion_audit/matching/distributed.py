"""Pairwise work on a Dask cluster (deformation pairs).

By default a :class:`dask.distributed.LocalCluster` with one single-threaded
worker process per core is started; ``scheduler_address`` uses an existing
cluster instead. Every task sets torch, OpenMP and ITK threads explicitly so
that workers do not oversubscribe cores. A failed pair is retried once, then
reported by subject pair; the other pairs' results are kept.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import JobCancelled
from ..progress import ProgressCallback, report
from .ranking import ScoreMatrix

if TYPE_CHECKING:
    from distributed import Client

    from ..io import Volume

__all__ = [
    "PairFailure",
    "PairResults",
    "dask_client",
    "configure_worker_threads",
    "run_pairs",
    "deformation_matrix",
]

_THREAD_VARS = (
    "ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS",
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
)


@dataclass(frozen=True)
class PairFailure:
    """A pair that failed after its retry."""

    reconstruction_id: str
    candidate_id: str
    error: str

    def __str__(self) -> str:
        return f"{self.reconstruction_id} vs {self.candidate_id}: {self.error}"


@dataclass
class PairResults:
    """Scores ``[N, M]`` (NaN where not requested or failed) and the failed pairs."""

    values: np.ndarray
    failures: list[PairFailure] = field(default_factory=list)


def configure_worker_threads(threads: int = 1) -> int:
    """Set torch, OpenMP/BLAS and ITK threads of the calling process; return ``threads``.

    ITK reads its variable when ANTs first runs in a process, so this must run
    before the first registration (every task calls it first).
    """
    threads = max(1, int(threads))
    for var in _THREAD_VARS:
        os.environ[var] = str(threads)
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        return threads
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    return threads


@contextmanager
def dask_client(
    scheduler_address: str | None = None,
    n_workers: int | None = None,
    threads_per_worker: int = 1,
    processes: bool = True,
) -> Iterator[Client]:
    """A Dask client: on ``scheduler_address`` if given, else on a new LocalCluster.

    The LocalCluster has ``n_workers`` workers (default: cores // threads_per_worker),
    each with ``threads_per_worker`` threads, and its dashboard on a free port. Worker processes
    start with the thread variables of :func:`configure_worker_threads` set.
    """
    from distributed import Client, LocalCluster

    if scheduler_address:
        client = Client(scheduler_address)
        try:
            client.run(configure_worker_threads, threads_per_worker)
            yield client
        finally:
            client.close()
        return
    n_workers = n_workers or max(1, (os.cpu_count() or 1) // max(1, threads_per_worker))
    kwargs: dict[str, Any] = {}
    if processes:
        kwargs["env"] = {var: str(threads_per_worker) for var in _THREAD_VARS}
    with (
        LocalCluster(
            n_workers=n_workers,
            threads_per_worker=threads_per_worker,
            processes=processes,
            dashboard_address=":0",  # a free port: never collide with another cluster
            **kwargs,
        ) as cluster,
        Client(cluster) as client,
    ):
        yield client


def _run_task(
    fn: Callable[..., float], threads: int, reconstruction: Any, candidate: Any, kwargs: dict
) -> float:
    if threads:  # 0: in-process workers share the caller's settings
        configure_worker_threads(threads)
    return float(fn(reconstruction, candidate, **kwargs))


def _short_error(exc: BaseException | None) -> str:
    if exc is None:
        return "unknown error"
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:300]


def run_pairs(
    pair_fn: Callable[..., float],
    reconstructions: Sequence[Any],
    candidates: Sequence[Any],
    reconstruction_ids: Sequence[str],
    candidate_ids: Sequence[str],
    pairs: np.ndarray | None = None,
    pair_kwargs: dict | None = None,
    client: Client | None = None,
    scheduler_address: str | None = None,
    n_workers: int | None = None,
    threads_per_worker: int = 1,
    processes: bool = True,
    retries: int = 1,
    progress: ProgressCallback | None = None,
    stage: str = "pairs",
) -> PairResults:
    """Run ``pair_fn(reconstructions[i], candidates[j], **pair_kwargs)`` for the selected pairs on Dask.

    Parameters
    ----------
    pair_fn : a picklable (module-level) function returning a float.
    reconstructions, candidates : picklable objects (volumes, arrays); each is
        sent to the cluster once.
    pairs : boolean ``[N, M]`` of the pairs to run; ``None`` runs all.
    client : an existing client; otherwise one is made with :func:`dask_client`.
    threads_per_worker : threads each task sets for torch, BLAS and ITK (0 leaves them).
    retries : how often a failed pair is retried before it is reported.
    progress : called as ``progress(done, total, stage)``; may raise ``JobCancelled``.

    Returns
    -------
    :class:`PairResults`; failed pairs are NaN and listed by subject ids.
    """
    n, m = len(reconstructions), len(candidates)
    if len(reconstruction_ids) != n or len(candidate_ids) != m:
        raise ValueError("ids must match the reconstructions and candidates")
    if pairs is None:
        pairs = np.ones((n, m), dtype=bool)
    pairs = np.asarray(pairs, dtype=bool)
    if pairs.shape != (n, m):
        raise ValueError(f"pairs shape {pairs.shape} does not match ({n}, {m})")
    values = np.full((n, m), np.nan)
    todo = [(int(i), int(j)) for i, j in np.argwhere(pairs)]
    if not todo:
        return PairResults(values)
    if client is None:
        with dask_client(scheduler_address, n_workers, threads_per_worker, processes) as own:
            in_process = not processes and not scheduler_address
            return run_pairs(
                pair_fn,
                reconstructions,
                candidates,
                reconstruction_ids,
                candidate_ids,
                pairs,
                pair_kwargs,
                own,
                retries=retries,
                threads_per_worker=0 if in_process else threads_per_worker,
                progress=progress,
                stage=stage,
            )
    from distributed import as_completed

    rows = sorted({i for i, _ in todo})
    cols = sorted({j for _, j in todo})
    rec_f = dict(zip(rows, client.scatter([reconstructions[i] for i in rows]), strict=True))
    cand_f = dict(zip(cols, client.scatter([candidates[j] for j in cols]), strict=True))
    futures = {}
    for i, j in todo:
        fut = client.submit(
            _run_task,
            pair_fn,
            threads_per_worker,
            rec_f[i],
            cand_f[j],
            dict(pair_kwargs or {}),
            retries=retries,
            pure=False,
            key=f"{stage.replace(' ', '-')}-{i}-{j}-{os.urandom(4).hex()}",
        )
        futures[fut] = (i, j)
    failures: list[PairFailure] = []
    done = 0
    report(progress, 0, len(todo), stage)
    try:
        for fut in as_completed(list(futures)):
            i, j = futures[fut]
            if fut.status == "finished":
                values[i, j] = fut.result()
            else:
                failures.append(
                    PairFailure(
                        reconstruction_ids[i], candidate_ids[j], _short_error(fut.exception())
                    )
                )
            done += 1
            report(progress, done, len(todo), stage)
    except JobCancelled:
        client.cancel(list(futures))
        raise
    failures.sort(key=lambda f: (f.reconstruction_id, f.candidate_id))
    return PairResults(values, failures)


def _deformation_pair(
    moving: Volume,
    fixed: tuple[Volume, np.ndarray | None],
    preset: str,
    cache: bool,
    registration: str = "ants",
) -> float:
    from ..metrics.deformation import deformation

    fixed_volume, fixed_mask = fixed
    # isolated: ANTsPy (and greedy) hold the GIL for the whole registration, which would stop the
    # worker's heartbeats and get it declared dead (and its work lost) on long pairs
    # one ITK thread and a fixed seed: the same result as the study's local registrations
    return deformation(
        moving,
        fixed_volume,
        fixed_mask=fixed_mask,
        preset=preset,
        cache=cache,
        threads=1,
        seed=0,
        isolated=True,
        registration=registration,
    ).mean_displacement_mm


def deformation_matrix(
    reconstructions: Sequence[Volume],
    candidates: Sequence[Volume],
    reconstruction_ids: Sequence[str],
    candidate_ids: Sequence[str],
    candidate_masks: Sequence[np.ndarray | None] | None = None,
    pairs: np.ndarray | None = None,
    preset: str = "paper",
    cache: bool = True,
    top_k: int | None = None,
    registration: str = "ants",
    **dask_kwargs: Any,
) -> tuple[ScoreMatrix, list[PairFailure]]:
    """Deformation (mean displacement, mm) of the selected pairs, run on Dask.

    ``pairs`` (boolean ``[N, M]``, e.g. each reconstruction's SSIM top-k from
    :func:`~inversion_audit.matching.ranking.top_k_mask`) selects the pairs to
    register; the others are NaN, and the returned matrix's notes say so
    (pass ``top_k`` to name the restriction). ``registration`` picks the backend (``"ants"``
    or ``"greedy"``; greedy has no ``paper`` preset), checked before any task is sent.
    ``dask_kwargs`` go to :func:`run_pairs`. Results are cached on the workers' disk
    (``cache_dir()/deformation``).
    """
    from ..metrics.registration import backend_label, check_registration

    check_registration(registration, preset)
    masks = list(candidate_masks) if candidate_masks is not None else [None] * len(candidates)
    if len(masks) != len(candidates):
        raise ValueError("candidate_masks must have one entry per candidate")
    result = run_pairs(
        _deformation_pair,
        list(reconstructions),
        [(c, mk) for c, mk in zip(candidates, masks, strict=True)],
        reconstruction_ids,
        candidate_ids,
        pairs=pairs,
        pair_kwargs={"preset": preset, "cache": cache, "registration": registration},
        stage=f"deformation ({preset})"
        if registration == "ants"
        else f"deformation ({registration} {preset})",
        **dask_kwargs,
    )
    notes = [
        f"{backend_label(registration)} preset {preset!r}; mean displacement norm in mm "
        "(lower is better)"
    ]
    if pairs is not None and not np.asarray(pairs).all():
        what = f"each reconstruction's SSIM top-{top_k} candidates" if top_k else "selected pairs"
        notes.append(f"computed only for {what}; other entries not computed")
    if result.failures:
        notes.append(
            f"{len(result.failures)} pair(s) failed after retry: "
            + "; ".join(map(str, result.failures))
        )
    matrix = ScoreMatrix(
        "deformation", result.values, list(reconstruction_ids), list(candidate_ids), False, notes
    )
    return matrix, result.failures
