"""The main job: the paper's protocol as one resumable study.

For each fold, variant, architecture and threat model: train the target network
on the private set, train the inversion decoder on the attack set, reconstruct
the private subjects, score every reconstruction against every candidate, and
rank. Every stage is recorded in ``STUDY/stages/`` and skipped on a re-run when
its inputs are unchanged.
"""

from __future__ import annotations

import csv
import glob
import io
import logging
import os
import time
from pathlib import Path

import numpy as np

from ..data import Cohort, Fold, kfold_split, load_cohort
from ..data.preprocess import PreprocessConfig, Preprocessed, config_with_nyul, preprocess_subject
from ..errors import CohortError, JobCancelled
from ..io import atomic_write_json, atomic_write_text, config_hash, file_hash, write_volume
from ..progress import ProgressCallback, report
from .config import StudyConfig, dump_study_config
from .layout import SCORE_COLUMNS, StudyPaths, run_name
from .provenance import Provenance, read_provenance
from .stages import StageStore

__all__ = ["run_study", "plan_study", "plan_study_seconds", "StudyPaths", "SCORE_COLUMNS"]

log = logging.getLogger(__name__)


def _resolve_cohort(path: str, config: StudyConfig) -> Cohort:
    from ..sample_data import SAMPLE_KEYWORD, generate_sample_cohort

    if path == SAMPLE_KEYWORD and not Path(path).exists():
        root = generate_sample_cohort(
            n_subjects=config.cohort.sample_n, seed=config.cohort.sample_seed
        )
    else:
        root = Path(path)
        if not root.is_absolute() and config.source:
            cand = Path(config.source).parent / root
            root = cand if cand.exists() else root
    return load_cohort(root, config.cohort.image_pattern, config.cohort.labels_pattern)


def _select(cohort: Cohort, config: StudyConfig) -> Cohort:
    ids = config.cohort.subjects or sorted(cohort.ids)
    if config.cohort.n_subjects is not None:
        if config.cohort.n_subjects > len(ids):
            raise CohortError(
                f"{cohort.root}: cohort.n_subjects={config.cohort.n_subjects} but only {len(ids)} subjects"
            )
        ids = ids[: config.cohort.n_subjects]
    return cohort.subset(ids)


def _common_shape(cohort: Cohort, base: PreprocessConfig) -> PreprocessConfig:
    """Fix ``shape`` to the largest per-subject shape so that all subjects share one grid."""
    import dataclasses

    if base.shape is not None:
        return base
    loose = dataclasses.replace(base, intensity="none", nyul_landmarks=None)
    shapes = np.array([preprocess_subject(s, loose).shape for s in cohort])
    return dataclasses.replace(base, shape=tuple(int(v) for v in shapes.max(0)))


def _write_scores(path: Path, rows: list[tuple]) -> Path:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(SCORE_COLUMNS)
    for r in rows:
        w.writerow([f"{v:.6g}" if isinstance(v, float) else v for v in r])
    return atomic_write_text(path, buf.getvalue())


class _Study:
    """State of one study run (one instance per ``run_study`` call)."""

    def __init__(
        self,
        config: StudyConfig,
        out: Path,
        device: str | None,
        progress: ProgressCallback | None,
        dry_run: bool = False,
    ):
        from ..devices import get_device

        self.config = config
        self.paths = StudyPaths(out)
        self.stages = StageStore(out, dry_run=dry_run)
        self.progress = progress
        self.device = str(get_device(device or config.study.device))
        self.cohort = _select(_resolve_cohort(config.cohort.path, config), config)
        self.attack_cohort = (
            _resolve_cohort(config.cohort.attack_path, config)
            if config.cohort.attack_path
            else None
        )
        self.folds: list[Fold] = kfold_split(
            self.cohort.ids, config.folds.n_folds, config.folds.seed
        )
        if config.folds.run_folds is not None:
            self.folds = [f for f in self.folds if f.index in config.folds.run_folds]
        self.pre_configs = {
            v: _common_shape(self.cohort, config.preprocess_config(v)) for v in config.variants
        }
        self.input_hashes = {
            s.id: {k: file_hash(p) for k, p in s.files().items()} for s in self.cohort
        }
        self.attack_hashes = (
            {s.id: {k: file_hash(p) for k, p in s.files().items()} for s in self.attack_cohort}
            if self.attack_cohort is not None
            else None
        )
        if self.attack_hashes is not None:
            self._warn_attack_overlap()
        # keyed by the subject's files, not its id: the attack cohort may reuse private ids
        self._pre_cache: dict[tuple[tuple[str, ...], str], Preprocessed] = {}
        self.provenance = Provenance(config.to_dict(), self.device)
        self.provenance.data["seeds"] = {
            "study": config.study.seed,
            "folds": config.folds.seed,
            "target": config.target.get("seed", config.study.seed),
            "inversion": config.inversion.get("seed", config.study.seed),
        }
        self.provenance.data["inputs"] = {
            "cohort": str(self.cohort.root),
            "files": self.input_hashes,
        }
        if self.attack_cohort is not None:
            self.provenance.data["inputs"].update(
                attack_cohort=str(self.attack_cohort.root), attack_files=self.attack_hashes
            )

    def _warn_attack_overlap(self) -> None:
        """Log attack images that are byte-identical to a private cohort image."""
        private = {h["image"]: sid for sid, h in self.input_hashes.items()}
        for sid, h in (self.attack_hashes or {}).items():
            if h["image"] in private:
                log.warning(
                    "attack subject %s has the same image as cohort subject %s: the attack "
                    "set is not independent of the private sets",
                    sid,
                    private[h["image"]],
                )

    # -- helpers ---------------------------------------------------------------------------------
    def fold_pre_config(self, variant: str, fold: Fold) -> PreprocessConfig:
        """Nyul landmarks (if used) are learned on the fold's private set only."""
        return config_with_nyul(
            self.pre_configs[variant], [self.cohort[i] for i in fold.private_set]
        )

    def pre(
        self, subject_id: str, config: PreprocessConfig, cohort: Cohort | None = None
    ) -> Preprocessed:
        """``subject_id`` of ``cohort`` (default: the study cohort) preprocessed with ``config``."""
        subject = (cohort or self.cohort)[subject_id]
        key = (tuple(str(p) for p in subject.files().values()), config_hash(config.to_dict()))
        if key not in self._pre_cache:
            self._pre_cache[key] = preprocess_subject(subject, config)
        return self._pre_cache[key]

    def files_key(self, ids) -> str:
        return config_hash({i: self.input_hashes[i] for i in sorted(ids)})

    def attack_key(self, fold: Fold) -> dict:
        """What the inversion stage key holds about the attack set.

        The attack ids, plus the attack files' hashes when a separate attack cohort
        is configured (studies without one keep their keys).
        """
        ids, _ = self.attack_ids(fold)
        key: dict = {"attack": ids}
        if self.attack_hashes is not None:
            key["attack_files"] = config_hash({i: self.attack_hashes[i] for i in ids})
        return key

    def stage_progress(self, label: str) -> ProgressCallback:
        def cb(done: int, total: int, stage: str) -> None:
            report(self.progress, done, total, f"{label}: {stage}")

        return cb

    # -- stages ----------------------------------------------------------------------------------
    def write_provenance(self) -> None:
        atomic_write_json(
            self.paths.root / "provenance.json",
            self.provenance.to_dict(self.stages.timings, self.stages.resumed),
        )

    def run(self) -> Path:
        out = self.paths.root
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / "config.toml", dump_study_config(self.config))
        self.provenance.merge_previous(read_provenance(out / "provenance.json"))
        self.write_provenance()  # the start is kept even if this invocation is interrupted
        try:
            self._run_stages()
        except BaseException as exc:
            cancelled = isinstance(exc, JobCancelled | KeyboardInterrupt)
            self.provenance.finish("cancelled" if cancelled else "failed")
            self.write_provenance()
            raise
        return out

    def _run_stages(self) -> None:
        self.stages_in_order()
        self.collect()

    def stages_in_order(self) -> None:
        """Every stage of the protocol: preprocessing, then each fold's attacks."""
        for variant in self.config.variants:
            self.write_preprocessed(variant)
        for fold in self.folds:
            for variant in self.config.variants:
                for arch in self.config.archs:
                    target_key = self.train_target(fold, variant, arch)
                    for threat in self.config.threat_models:
                        self.attack(fold, variant, arch, threat, target_key)

    def write_preprocessed(self, variant: str) -> None:
        cfg = self.pre_configs[variant]
        key = config_hash({"cfg": cfg.to_dict(), "files": self.files_key(self.cohort.ids), "v": 2})

        def work() -> list[Path]:
            outs = []
            for k, s in enumerate(self.cohort):
                pre = self.pre(s.id, cfg)
                outs.append(
                    write_volume(self.paths.preprocessed(variant, s.id), pre.image, pre.affine)
                )
                if pre.labels is not None:
                    outs.append(
                        write_volume(
                            self.paths.preprocessed_labels(variant, s.id),
                            pre.labels.astype(np.int16),
                            pre.affine,
                        )
                    )
                report(self.progress, k + 1, len(self.cohort), f"preprocess {variant}")
            return outs

        self.stages.run(f"preprocess/{variant}", key, work)

    def train_target(self, fold: Fold, variant: str, arch: str) -> str:
        from ..checkpoints import save_checkpoint, training_metadata
        from ..training import train_target
        from ..training.target import TRAINING_REVISION

        tcfg = self.config.target_config(arch)
        pcfg = self.fold_pre_config(variant, fold)
        key = config_hash(
            {
                "target": tcfg.to_dict(),
                "training_revision": TRAINING_REVISION,
                "pre": pcfg.to_dict(),
                "private": self.files_key(fold.private_set),
                "fold": fold.index,
            }
        )
        path = self.paths.target(arch, variant, fold.index)

        def work() -> list[Path]:
            pres = [self.pre(i, pcfg) for i in fold.private_set]
            if any(p.labels is None for p in pres):
                raise CohortError(
                    f"{self.cohort.root}: training a target network needs labels for every private subject"
                )
            model, history = train_target(
                [p.image for p in pres],
                [p.labels for p in pres],
                tcfg,
                device=self.device,
                progress=self.stage_progress(f"fold {fold.index} {arch} {variant}"),
            )
            meta = training_metadata(tcfg, history, pcfg, list(fold.private_set))
            meta.update(fold=fold.index, variant=variant)
            return list(save_checkpoint(path, model, meta))

        self.stages.run(f"fold{fold.index}/{arch}_{variant}/target", key, work)
        return key

    def attack_ids(self, fold: Fold) -> tuple[list[str], Cohort]:
        if self.attack_cohort is not None:
            return sorted(self.attack_cohort.ids), self.attack_cohort
        return list(fold.attack_set), self.cohort

    def attack(self, fold: Fold, variant: str, arch: str, threat: str, target_key: str) -> None:
        from ..attack import reconstruct, train_inversion
        from ..checkpoints import load_inversion, load_target, save_checkpoint, training_metadata
        from ..training import segment

        run = run_name(arch, variant, threat)
        icfg = self.config.inversion_config(threat)
        pcfg = self.fold_pre_config(variant, fold)
        attack_ids, attack_cohort = self.attack_ids(fold)
        inv_key = config_hash(
            {"target": target_key, "inversion": icfg.to_dict(), **self.attack_key(fold)}
        )
        label = f"fold {fold.index} {run}"
        tpath, ipath = (
            self.paths.target(arch, variant, fold.index),
            self.paths.inversion(run, fold.index),
        )

        def train() -> list[Path]:
            target = load_target(tpath, device=self.device)
            pres = [self.pre(i, pcfg, attack_cohort) for i in attack_ids]
            decoder, history = train_inversion(
                target,
                [p.image for p in pres],
                icfg,
                device=self.device,
                progress=self.stage_progress(label),
            )
            meta = training_metadata(icfg, history, pcfg, attack_ids)
            meta.update(fold=fold.index, variant=variant)
            return list(save_checkpoint(ipath, decoder, meta))

        self.stages.run(f"fold{fold.index}/{run}/inversion", inv_key, train)

        rec_key = config_hash({"inversion": inv_key, "private": self.files_key(fold.private_set)})

        def recon() -> list[Path]:
            target = load_target(tpath, device=self.device)
            decoder = load_inversion(ipath, target=target, device=self.device)
            outs = []
            for k, sid in enumerate(fold.private_set):
                pre = self.pre(sid, pcfg)
                rec = reconstruct(target, decoder, pre.image, device=self.device)
                outs.append(
                    write_volume(
                        self.paths.reconstruction(run, sid, "preprocessed"), rec, pre.affine
                    )
                )
                outs.append(
                    write_volume(
                        self.paths.reconstruction(run, sid, "original"), pre.to_source(rec)
                    )
                )
                report(self.progress, k + 1, len(fold.private_set), f"{label}: reconstruct")
            return outs

        self.stages.run(f"fold{fold.index}/{run}/reconstruct", rec_key, recon)

        m = self.config.matching
        score_key = config_hash(
            {
                "recon": rec_key,
                "matching": m.__dict__,
                "candidates": self.files_key(self.cohort.ids),
            }
        )

        def score() -> list[Path]:
            from .scoring import score_fold

            target = load_target(tpath, device=self.device)
            recs = {sid: self._read_recon(run, sid) for sid in fold.private_set}
            cands = {s.id: self.pre(s.id, pcfg) for s in self.cohort}
            rows, maps = score_fold(
                recs,
                cands,
                m,
                segment_fn=lambda img: segment(target, img, device=self.device),
                label_map=self.config.target_config(arch).label_map,
                device=self.device,
                progress=self.stage_progress(label),
                registration_workers=self.config.study.threads or os.cpu_count() or 1,
            )
            # maps of a superseded run of this stage must not outlive its scores
            folder = self.paths.deformation_dir(run)
            for sid in fold.private_set:
                for old in folder.glob(glob.escape(f"{sid}__") + "*_magnitude.nii.gz"):
                    old.unlink()
            outs = []
            for (sid, cid), magnitude in maps.items():
                pre = cands[cid]
                outs.append(
                    write_volume(self.paths.deformation(run, sid, cid), magnitude, pre.affine)
                )
            tagged = [(fold.index, arch, variant, threat, *r) for r in rows]
            outs.append(_write_scores(self.paths.score_part(run, fold.index), tagged))
            return outs

        self.stages.run(f"fold{fold.index}/{run}/score", score_key, score)

    def write_rankings(self, summary: dict) -> None:
        """``rankings/<run>.csv``: rank of the true original and the top-1 candidate per metric."""
        for run, entry in summary["runs"].items():
            buf = io.StringIO()
            w = csv.writer(buf, lineterminator="\n")
            w.writerow(["reconstruction_id", "metric", "rank_of_true_match", "top1_candidate"])
            for metric, t in entry["table3"].items():
                for rid, rank in t["ranks"].items():
                    w.writerow([rid, metric, rank, t["top1_candidates"][rid]])
            atomic_write_text(self.paths.rankings(run), buf.getvalue())

    def _read_recon(self, run: str, sid: str) -> np.ndarray:
        from ..io import read_volume

        return read_volume(self.paths.reconstruction(run, sid, "preprocessed")).array

    def collect(self) -> None:
        """Concatenate score parts, rank, report, and write provenance."""
        from .report import write_report

        parts = sorted((self.paths.root / "scores" / "parts").glob("*.csv"))
        wanted = {
            self.paths.score_part(run_name(a, v, t), f.index).name
            for f in self.folds
            for v in self.config.variants
            for a in self.config.archs
            for t in self.config.threat_models
        }
        lines = [SCORE_COLUMNS]
        for p in parts:
            if p.name in wanted:
                with open(p, newline="") as fh:
                    lines.extend(tuple(r) for r in list(csv.reader(fh))[1:])
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerows(lines)
        atomic_write_text(self.paths.scores, buf.getvalue())
        start = time.perf_counter()
        summary = write_report(self.paths.root, self.config)["summary"]
        self.write_rankings(summary)
        self.stages.timings["report"] = time.perf_counter() - start
        self.provenance.finish()
        self.write_provenance()


def plan_study(config: StudyConfig, out_dir: str | Path) -> list[tuple[str, bool]]:
    """Every stage of the study in run order, with whether it is already done in ``out_dir``.

    Nothing is run or written: the stage keys are computed from the config and the input
    files, as a real run would, so a stage listed as not done is exactly one that
    ``run_study`` would (re)compute.
    """
    return [(name, done) for name, done, _ in plan_study_seconds(config, out_dir)]


def plan_study_seconds(
    config: StudyConfig, out_dir: str | Path
) -> list[tuple[str, bool, float | None]]:
    """:func:`plan_study` with each stage's wall seconds: recorded when done, else estimated
    from the same stage of the folds already run (see :func:`.stages.estimate_seconds`)."""
    from .stages import estimate_seconds

    study = _Study(config, Path(out_dir), "cpu", None, dry_run=True)
    study.stages_in_order()
    return estimate_seconds(study.stages.plan, study.stages.timings)


def run_study(
    config: StudyConfig,
    out_dir: str | Path,
    device: str | None = None,
    progress: ProgressCallback | None = None,
) -> Path:
    """Run (or resume) a study into ``out_dir`` and return the folder.

    A :class:`~inversion_audit.errors.JobCancelled` raised by ``progress`` stops the
    run; completed stages are kept and a re-run continues from there.
    """
    from ..devices import set_threads

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    set_threads(config.study.threads)
    handler = logging.FileHandler(out / "study.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root_logger = logging.getLogger("inversion_audit")
    root_logger.addHandler(handler)
    root_logger.setLevel(logging.INFO)
    try:
        log.info("study %s -> %s", config.study.name, out)
        study = _Study(config, out, device, progress)
        result = study.run()
        log.info("study finished: %s", out / "report.html")
        return result
    finally:
        root_logger.removeHandler(handler)
        handler.close()
