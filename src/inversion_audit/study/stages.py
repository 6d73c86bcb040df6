"""Resumable stages: a stage is done when its record's key matches and its outputs are intact."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..errors import StudyError
from ..io import atomic_write_json, file_hash
from ..io.untrusted import read_json
from .layout import StudyPaths

__all__ = ["StageStore", "StageRecord", "estimate_seconds"]


@dataclass(frozen=True)
class StageRecord:
    name: str
    key: str
    outputs: dict[str, str]
    seconds: float
    finished: str


class StageStore:
    """Records of completed stages under ``STUDY/stages/``.

    A stage's ``key`` hashes everything it depends on (its config section and the
    keys of upstream stages), so a changed config invalidates only the stages it
    affects. Outputs are written atomically before the record, so a run killed at
    any moment leaves either a complete stage or none.
    """

    def __init__(
        self, study_dir: Path, dry_run: bool = False, reuse_from: Path | None = None
    ) -> None:
        self.root = Path(study_dir)
        self.dir = StudyPaths(self.root).stages_dir
        self.timings: dict[str, float] = {}
        #: stages skipped by :meth:`run` because already done (in order)
        self.resumed: list[str] = []
        #: with ``dry_run``, :meth:`run` runs nothing and lists ``(name, done)`` here
        self.dry_run = dry_run
        self.plan: list[tuple[str, bool]] = []
        #: another study whose finished stages with the same name and key are copied, not rerun
        self.source = StageStore(Path(reuse_from)) if reuse_from is not None else None
        #: stages copied from ``reuse_from``, with that study's folder name (in order)
        self.reused: dict[str, str] = {}

    def _path(self, name: str) -> Path:
        return self.dir / (name.replace("/", "__") + ".json")

    def is_done(self, name: str, key: str) -> bool:
        """True when ``name`` completed with ``key`` and its outputs still hash the same."""
        path = self._path(name)
        if not path.exists():
            return False
        try:
            rec = read_json(path, StudyError, "stage record")
        except StudyError:
            return False  # a damaged record: the stage runs again
        if not isinstance(rec, dict) or rec.get("key") != key:
            return False
        for rel, digest in rec.get("outputs", {}).items():
            out = self.root / rel
            if not out.exists() or file_hash(out) != digest:
                return False
        self.timings.setdefault(name, float(rec.get("seconds", 0.0)))
        return True

    def record(self, name: str, key: str, outputs: list[Path], seconds: float) -> StageRecord:
        """Record ``name`` as complete with the hashes of its ``outputs``."""
        rels = {
            str(Path(p).resolve().relative_to(self.root.resolve())): file_hash(p) for p in outputs
        }
        rec = StageRecord(name, key, rels, seconds, time.strftime("%Y-%m-%dT%H:%M:%S"))
        atomic_write_json(self._path(name), rec.__dict__)
        self.timings[name] = seconds
        return rec

    def run(self, name: str, key: str, fn: Callable[[], list[Path]]) -> bool:
        """Run ``fn`` unless the stage is done; return True when it ran."""
        if self.dry_run:
            if any(planned == name for planned, _ in self.plan):
                return False  # a stage that several runs share (one VAE for every strength)
            reusable = self.source is not None and self.source.is_done(name, key)
            if reusable and name not in self.timings:
                self.timings[name] = self.source.timings[name]
            self.plan.append((name, self.is_done(name, key) or reusable))
            return False
        if self.is_done(name, key):
            if name not in self.resumed:
                self.resumed.append(name)
            return False
        if self._copy_from_source(name, key):
            return False
        start = time.perf_counter()
        outputs = fn()
        self.record(name, key, outputs, time.perf_counter() - start)
        return True

    def _copy_from_source(self, name: str, key: str) -> bool:
        """Copy a stage that ``reuse_from`` finished with the same key (same inputs, settings
        and upstream stages, so the same outputs): its files, then its record, which names the
        source folder. The outputs are checked against their hashes on both sides."""
        import os
        import shutil

        if self.source is None or not self.source.is_done(name, key):
            return False
        rec = read_json(self.source._path(name), StudyError, "stage record")
        for rel, digest in rec["outputs"].items():
            dest = self.root / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            tmp = dest.with_name(f".{dest.name}.reuse-{os.getpid()}")
            shutil.copyfile(self.source.root / rel, tmp)
            if file_hash(tmp) != digest:
                tmp.unlink()
                raise StudyError(f"{self.source.root / rel}: changed while it was copied")
            os.replace(tmp, dest)
        rec["reused_from"] = self.source.root.resolve().name
        atomic_write_json(self._path(name), rec)
        self.timings[name] = float(rec.get("seconds", 0.0))
        self.reused[name] = rec["reused_from"]
        return True


def _same_stage_other_fold(name: str) -> str:
    """``fold1/unet_with-skull/target`` -> ``unet_with-skull/target`` (names without a fold stay)."""
    head, _, rest = name.partition("/")
    return rest if head.startswith("fold") and rest else name


def estimate_seconds(
    plan: list[tuple[str, bool]], timings: dict[str, float]
) -> list[tuple[str, bool, float | None]]:
    """Each planned stage with its wall seconds: recorded when done, else the median recorded
    time (robust to a paused run) of the same stage in the other folds, else of the same kind
    of stage in other runs (``fold0/unet_x_latent-noise-1/inversion`` from every ``inversion``
    stage); ``None`` when nothing of the kind has run yet."""
    same_stage: dict[str, list[float]] = {}
    same_kind: dict[str, list[float]] = {}
    for name, done in plan:
        if done and name in timings:
            same_stage.setdefault(_same_stage_other_fold(name), []).append(timings[name])
            same_kind.setdefault(name.rpartition("/")[2], []).append(timings[name])
    out = []
    for name, done in plan:
        if done:
            out.append((name, True, timings.get(name)))
            continue
        seen = same_stage.get(_same_stage_other_fold(name)) or same_kind.get(
            name.rpartition("/")[2]
        )
        out.append((name, False, float(statistics.median(seen)) if seen else None))
    return out
