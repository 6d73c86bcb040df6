"""Progress callbacks shared by the CLI (tqdm) and the GUI (napari progress bars).

Core functions accept ``progress: ProgressCallback | None``. They call it as
``progress(done, total, stage)``. A callback may raise
:class:`~inversion_audit.errors.JobCancelled` to stop the job.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

__all__ = ["ProgressCallback", "report", "tqdm_progress"]

ProgressCallback = Callable[[int, int, str], None]


def report(progress: ProgressCallback | None, done: int, total: int, stage: str) -> None:
    """Call ``progress`` if given."""
    if progress is not None:
        progress(done, total, stage)


@contextmanager
def tqdm_progress(quiet: bool = False) -> Iterator[ProgressCallback]:
    """Yield a callback that drives one tqdm bar per stage name."""
    from tqdm.auto import tqdm

    bars: dict[str, tqdm] = {}

    def callback(done: int, total: int, stage: str) -> None:
        if quiet:
            return
        bar = bars.get(stage)
        if bar is None:
            for other in bars.values():
                other.close()
            bar = bars[stage] = tqdm(total=total, desc=stage, leave=True, dynamic_ncols=True)
        if bar.total != total:
            bar.total = total
        bar.n = done
        bar.refresh()

    try:
        yield callback
    finally:
        for bar in bars.values():
            bar.close()
