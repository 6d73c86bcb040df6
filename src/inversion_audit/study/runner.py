"""The main job: the paper's protocol as one resumable study.

For each fold, variant, architecture and threat model: train the target network
on the private set, train the inversion decoder on the attack set, reconstruct
the private subjects, score every reconstruction against every candidate, and
rank. Every stage is recorded in ``STUDY/stages/`` and skipped on a re-run when
its inputs are unchanged.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from ..data import Cohort, Fold, kfold_split
from ..data.cohort import require_valid
from ..data.preprocess import (
    PreprocessConfig,
    Preprocessed,
    config_with_nyul,
    preprocess_subject,
    save_pending,
)
from ..errors import JobCancelled, StudyError
from ..io import atomic_write_json, atomic_write_text, config_hash, file_hash
from ..io.paths import check_output_folder
from ..progress import ProgressCallback, report
from . import defended_runs, protocol
from .collect import concatenate_scores, write_rankings
from .config import StudyConfig, check_folds, dump_study_config
from .holdout import assign_holdout, check_holdout_unused, gallery, resolve_holdout
from .inputs import check_cohort_paths, common_shape, resolve_cohort, select_subjects
from .layout import SCORE_COLUMNS, StudyPaths, run_name
from .provenance import Provenance, read_provenance
from .stages import StageStore

__all__ = ["run_study", "plan_study", "plan_study_seconds", "StudyPaths", "SCORE_COLUMNS"]

log = logging.getLogger(__name__)


class _Study:
    """State of one study run (one instance per ``run_study`` call)."""

    def __init__(
        self,
        config: StudyConfig,
        out: Path,
        device: str | None,
        progress: ProgressCallback | None,
        dry_run: bool = False,
        reuse_from: Path | None = None,
    ):
        from ..devices import get_device

        self.config = config
        self.paths = StudyPaths(out)
        self.stages = StageStore(out, dry_run=dry_run, reuse_from=reuse_from)
        self.progress = progress
        self.device = str(get_device(device or config.study.device))
        check_cohort_paths(config)  # every folder named, before the sample cohort is generated
        full = resolve_cohort(config.cohort.path, config)
        protocol_cohort = select_subjects(full, config)
        # the non-member control: scored as candidates and reconstructed, never trained on
        self.holdout = resolve_holdout(config, full, protocol_cohort)
        self.holdout_ids = self.holdout.ids if self.holdout is not None else []
        self.cohort = gallery(protocol_cohort, self.holdout)
        self.attack_cohort = (
            resolve_cohort(config.cohort.attack_path, config) if config.cohort.attack_path else None
        )
        check_folds(config, len(protocol_cohort))
        self.folds: list[Fold] = kfold_split(
            protocol_cohort.ids, config.folds.n_folds, config.folds.seed
        )
        if config.folds.run_folds is not None:
            self.folds = [f for f in self.folds if f.index in config.folds.run_folds]
        self.holdout_by_fold = assign_holdout(self.holdout_ids, self.folds)
        # every image and label header is read before anything is written (a bad file late
        # in the cohort must not leave the earlier subjects' outputs behind)
        where = config.source or "config"
        require_valid(self.cohort, require_labels=not config.model, where=f"{where}: cohort")
        if self.attack_cohort is not None:
            require_valid(self.attack_cohort, where=f"{where}: cohort.attack_path")
        #: preprocessing cache entries computed while checking, written once the run starts
        self.pending_cache: list = []
        self.pre_configs = {
            v: common_shape(self.cohort, config.preprocess_config(v), self.pending_cache)
            for v in config.variants
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
        for fold in self.folds:  # fail before any training if a holdout id would train
            check_holdout_unused(
                self.holdout_ids,
                {
                    f"fold {fold.index} private set": fold.private_set,
                    f"fold {fold.index} attack set": self.attack_ids(fold)[0],
                },
            )
        #: with [model]: each variant's external model, loaded while checking the inputs
        self.external_models: dict = {}
        if config.model:  # the external model is loaded and checked before any write
            from .external_run import check_external

            check_external(self)
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

    def holdout_of(self, fold: Fold) -> list[str]:
        """The holdout ids this fold's target and decoder reconstruct (none without a holdout)."""
        return self.holdout_by_fold.get(fold.index, [])

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
            self.provenance.to_dict(self.stages.timings, self.stages.resumed, self.stages.reused),
        )

    def run(self) -> Path:
        out = self.paths.root
        out.mkdir(parents=True, exist_ok=True)
        save_pending(self.pending_cache)
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
        if self.config.model:  # [model]: one run on an external model (external_run.py)
            from .external_run import run_external

            return run_external(self)
        for variant in self.config.variants:
            protocol.write_preprocessed(self, variant)
        for fold in self.folds:
            for variant in self.config.variants:
                for arch in self.config.archs:
                    target_key = protocol.train_target(self, fold, variant, arch)
                    for threat in self.config.threat_models:
                        protocol.attack(self, fold, variant, arch, threat, target_key)
                    defended_runs.run_defences(self, fold, variant, arch, target_key)

    def attack_ids(self, fold: Fold) -> tuple[list[str], Cohort]:
        if self.attack_cohort is not None:
            return sorted(self.attack_cohort.ids), self.attack_cohort
        return list(fold.attack_set), self.cohort

    def collect(self) -> None:
        """Concatenate score parts, rank, report, and write provenance."""
        from .report import write_report

        wanted = {
            self.paths.score_part(run_name(a, v, t), f.index).name
            for f in self.folds
            for v in self.config.variants
            for a in (["external"] if self.config.model else self.config.archs)
            for t in self.config.threat_models
        }
        wanted |= {
            self.paths.score_part(run, f.index).name
            for f in self.folds
            for run in defended_runs.defended_runs(self.config)
        }
        concatenate_scores(self.paths, wanted)
        if self.holdout_ids:
            from .membership_report import write_holdout_ids

            write_holdout_ids(self.paths.root, self.holdout_ids, self.holdout_by_fold)
        start = time.perf_counter()
        summary = write_report(self.paths.root, self.config)["summary"]
        write_rankings(self.paths, summary)
        self.stages.timings["report"] = time.perf_counter() - start
        self.provenance.finish()
        self.write_provenance()


def plan_study(
    config: StudyConfig, out_dir: str | Path, reuse_from: str | Path | None = None
) -> list[tuple[str, bool]]:
    """Every stage of the study in run order, with whether it is already done in ``out_dir``
    (or can be copied from the study ``reuse_from``).

    Nothing is run or written: the stage keys are computed from the config and the input
    files, as a real run would, so a stage listed as not done is exactly one that
    ``run_study`` would (re)compute.
    """
    return [(name, done) for name, done, _ in plan_study_seconds(config, out_dir, reuse_from)]


def plan_study_seconds(
    config: StudyConfig, out_dir: str | Path, reuse_from: str | Path | None = None
) -> list[tuple[str, bool, float | None]]:
    """:func:`plan_study` with each stage's wall seconds: recorded when done, else estimated
    from the same stage of the folds already run (see :func:`.stages.estimate_seconds`)."""
    from .stages import estimate_seconds

    reuse = Path(reuse_from) if reuse_from is not None else None
    study = _Study(config, Path(out_dir), "cpu", None, dry_run=True, reuse_from=reuse)
    study.stages_in_order()
    return estimate_seconds(study.stages.plan, study.stages.timings)


def run_study(
    config: StudyConfig,
    out_dir: str | Path,
    device: str | None = None,
    progress: ProgressCallback | None = None,
    reuse_from: str | Path | None = None,
) -> Path:
    """Run (or resume) a study into ``out_dir`` and return the folder.

    A :class:`~inversion_audit.errors.JobCancelled` raised by ``progress`` stops the
    run; completed stages are kept and a re-run continues from there. ``reuse_from``: another
    study folder whose finished stages with the same name and key (same inputs, settings and
    upstream stages) are copied instead of rerun, e.g. the undefended runs of an audit into
    its defences study.
    """
    from ..children import clean_stale_scratch
    from ..devices import set_threads

    out = Path(out_dir)
    check_output_folder(out)
    reuse = Path(reuse_from) if reuse_from is not None else None
    if reuse is not None and not (reuse / "stages").is_dir():
        raise StudyError(f"{reuse}: not a study folder (no stages/) to reuse stages from")
    # every input is read and checked here; nothing is written before this succeeds
    study = _Study(config, out, device, progress, reuse_from=reuse)
    out.mkdir(parents=True, exist_ok=True)
    clean_stale_scratch()  # temporary images left by a killed earlier run
    set_threads(config.study.threads)
    handler = logging.FileHandler(out / "study.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root_logger = logging.getLogger("inversion_audit")
    root_logger.addHandler(handler)
    root_logger.setLevel(logging.INFO)
    try:
        log.info("study %s -> %s", config.study.name, out)
        result = study.run()
        log.info("study finished: %s", out / "report.html")
        return result
    finally:
        root_logger.removeHandler(handler)
        handler.close()
