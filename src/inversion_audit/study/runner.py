"""The main job: the paper's protocol (Subbanna et al., Sensors 2021) as one resumable study.

:func:`run_study` reads and checks every input (:mod:`.resolved`), builds the frozen
:class:`~.plan.StudyPlan`, and only then writes: it walks the plan's runs through the
stages (:mod:`.protocol`, :mod:`.defended_runs`, :mod:`.reid_stage`) with one
:class:`~.context.StudyContext`, then concatenates the scores and writes the rankings. Every
stage is recorded in ``STUDY/stages/`` and skipped on a re-run when its inputs are unchanged.
The report is the layer above's (:func:`inversion_audit.report.write_report`, which the front
doors call once :func:`run_study` returns).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from ..data import Fold
from ..data.preprocess import save_pending
from ..errors import JobCancelled, StudyError
from ..io import atomic_write_json, atomic_write_text
from ..io.paths import check_output_folder
from ..progress import ProgressCallback
from . import defended_runs, protocol
from .collect import concatenate_scores, write_holdout_ids
from .config import StudyConfig, dump_study_config
from .context import StudyContext
from .external_run import load_models, own_segmentation
from .layout import SCORE_COLUMNS, StudyPaths
from .network import Network, external_network, protocol_network
from .plan import EXTERNAL, Run, StudyPlan, build_plan
from .provenance import Provenance, read_provenance
from .rankings import write_rankings
from .record_losses import record_losses
from .reid_stage import train_reid_stage
from .resolved import StudyInputs, read_inputs
from .score_files import read_scores
from .stages import StageStore

__all__ = ["run_study", "plan_study", "plan_study_seconds", "StudyPaths", "SCORE_COLUMNS"]

log = logging.getLogger(__name__)


def _attack(plan: StudyPlan, run: Run, ctx: StudyContext, fold: Fold, net: Network) -> None:
    """One run in one fold: inversion, reconstruction, the re-identifier where ``reid`` is a
    metric (not for an external model), scoring."""
    inv_key = protocol.train_inversion(plan, run, ctx, fold, net)
    rec_key = protocol.reconstruct(plan, run, ctx, fold, net, inv_key)
    reid_key = None
    if "reid" in plan.config.matching.metrics:
        reid_key = train_reid_stage(plan, run, ctx, fold, net)
    protocol.score(plan, run, ctx, fold, net, rec_key, reid_key)


def _walk_protocol(plan: StudyPlan, ctx: StudyContext) -> None:
    """Preprocessing; then per fold, variant and architecture the target and its undefended
    runs, then the undefended utility and every defence setting's target, utility and runs."""
    for variant in plan.config.variants:
        protocol.write_preprocessed(plan, variant, ctx)
    for fold in plan.folds:
        for variant in plan.config.variants:
            for arch in plan.config.archs:
                runs = plan.runs_of(arch, variant)
                base = protocol.train_target(plan, runs[0], ctx, fold)
                record_losses(plan, runs[0], ctx, fold, base)  # with a holdout and >= 2 folds
                for run in runs:
                    _attack(plan, run, ctx, fold, protocol_network(plan, run, ctx, fold, base))
                if not plan.settings:
                    continue
                net = protocol_network(plan, runs[0], ctx, fold, base)
                defended_runs.utility(plan, runs[0], ctx, fold, net, base)
                keys: dict[str, str] = {}  # obfuscation's two attackers share one target
                for setting in plan.settings:
                    defended = plan.runs_of(arch, variant, setting)
                    if setting.target_tag not in keys or not setting.retrains_target:
                        keys[setting.target_tag] = protocol.train_target(
                            plan, defended[0], ctx, fold, base
                        )
                    key = keys[setting.target_tag]
                    net = protocol_network(plan, defended[0], ctx, fold, key)
                    defended_runs.utility(plan, defended[0], ctx, fold, net, key)
                    for run in defended:
                        _attack(plan, run, ctx, fold, protocol_network(plan, run, ctx, fold, key))


def _walk_external(plan: StudyPlan, ctx: StudyContext) -> None:
    """The external model's runs (fold 0), then ``external_model.json``."""
    fold = plan.folds[0]
    record: dict = {"members": len(fold.private_set), "attack": len(plan.attack_ids(fold)[0])}
    if plan.holdout_ids:
        record["holdout"] = len(plan.holdout_ids)
    for variant in plan.config.variants:
        model = ctx.models[variant]
        record[variant] = dict(plan.models[variant])
        protocol.write_preprocessed(plan, variant, ctx)
        own, dice_note = own_segmentation(plan, ctx, model, fold, variant)
        if dice_note:
            record[variant]["dice"] = dice_note
        pcfg = ctx.fold_pre_config(plan, variant, fold)
        net = external_network(model, fold, pcfg.to_dict())
        for run in plan.runs_of(EXTERNAL, variant):
            inv_key = protocol.train_inversion(plan, run, ctx, fold, net)
            rec_key = protocol.reconstruct(plan, run, ctx, fold, net, inv_key)
            protocol.score(plan, run, ctx, fold, net, rec_key, own_segmentation=own)
    if not ctx.stages.dry_run:
        atomic_write_json(ctx.paths.external_record, record)


def walk(plan: StudyPlan, ctx: StudyContext) -> None:
    """Every stage of the plan, in order."""
    (_walk_external if plan.external else _walk_protocol)(plan, ctx)


def _provenance(plan: StudyPlan, device: str) -> Provenance:
    config = plan.config
    provenance = Provenance(config, device)
    provenance.data["inputs"] = {"cohort": str(plan.cohort.root), "files": plan.input_hashes}
    if plan.attack_cohort is not None:
        provenance.data["inputs"].update(
            attack_cohort=str(plan.attack_cohort.root), attack_files=plan.attack_hashes
        )
    return provenance


def _prepare(
    config: StudyConfig,
    out: Path,
    device: str | None,
    progress: ProgressCallback | None,
    dry_run: bool = False,
    reuse_from: Path | None = None,
) -> tuple[StudyPlan, StudyContext, StudyInputs]:
    """Read and check every input, load an external model, build the plan; write nothing."""
    from ..devices import get_device

    dev = str(get_device(device or config.study.device))
    inputs = read_inputs(config)
    models = load_models(config, inputs)
    plan = build_plan(config, inputs, models)
    stages = StageStore(out, dry_run=dry_run, reuse_from=reuse_from)
    ctx = StudyContext(StudyPaths(out), stages, dev, progress, models)
    return plan, ctx, inputs


def _write_provenance(ctx: StudyContext, provenance: Provenance) -> None:
    s = ctx.stages
    atomic_write_json(ctx.paths.provenance, provenance.to_dict(s.timings, s.resumed, s.reused))


def _collect(plan: StudyPlan, ctx: StudyContext, provenance: Provenance) -> None:
    """Concatenate score parts, record the holdout, rank, and write provenance."""
    wanted = {ctx.paths.score_part(r.name, f.index).name for f in plan.folds for r in plan.runs}
    scores = concatenate_scores(ctx.paths, wanted)
    if plan.holdout_ids:
        by_fold = {k: list(v) for k, v in plan.holdout_by_fold.items()}
        write_holdout_ids(ctx.paths, plan.holdout_ids, by_fold)
    start = time.perf_counter()
    write_rankings(ctx.paths, read_scores(scores), plan.holdout_ids)
    ctx.stages.timings["rankings"] = time.perf_counter() - start
    provenance.finish()
    _write_provenance(ctx, provenance)


def _run(plan: StudyPlan, ctx: StudyContext, inputs: StudyInputs) -> Path:
    out = ctx.paths.root
    out.mkdir(parents=True, exist_ok=True)
    save_pending(list(inputs.pending))
    atomic_write_text(ctx.paths.config, dump_study_config(plan.config))
    provenance = _provenance(plan, ctx.device)
    provenance.merge_previous(read_provenance(ctx.paths.provenance))
    _write_provenance(ctx, provenance)  # the start is kept even if this invocation is interrupted
    try:
        walk(plan, ctx)
        _collect(plan, ctx, provenance)
    except BaseException as exc:
        cancelled = isinstance(exc, JobCancelled | KeyboardInterrupt)
        provenance.finish("cancelled" if cancelled else "failed")
        _write_provenance(ctx, provenance)
        raise
    return out


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
    plan, ctx, _ = _prepare(config, Path(out_dir), "cpu", None, dry_run=True, reuse_from=reuse)
    walk(plan, ctx)
    return estimate_seconds(ctx.stages.plan, ctx.stages.timings)


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
    if reuse is not None and not StudyPaths(reuse).stages_dir.is_dir():
        raise StudyError(f"{reuse}: not a study folder (no stages/) to reuse stages from")
    # every input is read and checked here; nothing is written before this succeeds
    plan, ctx, inputs = _prepare(config, out, device, progress, reuse_from=reuse)
    out.mkdir(parents=True, exist_ok=True)
    clean_stale_scratch()  # temporary images left by a killed earlier run
    set_threads(config.study.threads)
    handler = logging.FileHandler(ctx.paths.log)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root_logger = logging.getLogger("inversion_audit")
    root_logger.addHandler(handler)
    root_logger.setLevel(logging.INFO)
    try:
        log.info("study %s -> %s", config.study.name, out)
        result = _run(plan, ctx, inputs)
        log.info("study finished: %s", out)
        return result
    finally:
        root_logger.removeHandler(handler)
        handler.close()
