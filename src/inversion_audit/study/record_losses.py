"""Per-record signals of each fold's target, for membership inference with reference models.

The k-fold protocol trains one target per fold: every protocol subject trained exactly one
of them (its fold's), the other k - 1 never saw it, and a holdout subject trained none. The
``record-losses`` stage evaluates each undefended fold target on *every* subject of the
gallery (protocol and holdout), so that the other folds' targets serve as reference models
that did not train on a record (offline RMIA, Zarifzadeh et al., ICML 2024; offline LiRA,
Carlini et al., IEEE S&P 2022; analysed in :mod:`.rmia`).

The signal, per subject ``x`` and target ``θ`` (on ``θ``'s fold preprocessing):

- ``log_likelihood``: the mean, over the subject's head or brain mask, of the per-voxel log
  softmax probability of the true class, ``(1/|M|) Σ_v log p_θ(y_v | x)`` (minus the
  mean cross-entropy). ``exp(log_likelihood)``, the geometric mean probability of the
  true labels, is the likelihood ``Pr(x | θ)`` the attacks use;
- ``dice``: the mean Dice of ``θ``'s segmentation against the labels (what the loss-threshold
  attack of the members vs non-members section uses, here on every record).

Stored as ``record_losses/<arch>_<variant>_fold<k>.json``
(:meth:`~.layout.StudyPaths.record_losses`) and read back through
:meth:`~.index.StudyIndex.record_losses` (:func:`read_record_losses`).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import StudyError
from ..io.untrusted import read_json
from .layout import StudyPaths

if TYPE_CHECKING:
    import numpy as np

    from ..data import Fold
    from .context import StudyContext
    from .plan import Run, StudyPlan

__all__ = ["SIGNALS", "read_record_losses", "record_losses", "record_signals"]

#: the signals each record holds, the first the likelihood the attacks use
SIGNALS = ("log_likelihood", "dice")
#: bumped when the signal's computation changes, so that resumed studies recompute it
SIGNAL_REVISION = 1


def record_losses(plan: StudyPlan, run: Run, ctx: StudyContext, fold: Fold, key: str) -> None:
    """The fold's undefended target (stage key ``key``) on every gallery subject with labels.

    Runs for a protocol study with a holdout and at least two folds (one reference model at
    least); otherwise does nothing. Stage ``fold<k>/<arch>_<variant>/record-losses``, keyed by
    the target's key and the subjects' files.
    """
    if plan.external or not plan.holdout_ids or len(plan.folds) < 2 or run.defence is not None:
        return
    from ..io import atomic_write_json, config_hash

    ids = list(plan.cohort.ids)
    path = ctx.paths.record_losses(run.arch, run.variant, fold.index)
    stage_key = config_hash(
        {"target": key, "subjects": plan.files_key(ids), "signal": SIGNAL_REVISION}
    )

    def work() -> list[Path]:
        from ..checkpoints import load_target

        pcfg = ctx.fold_pre_config(plan, run.variant, fold)
        target = load_target(ctx.paths.target(run.arch, run.variant, fold.index), device=ctx.device)
        label_map = plan.config.target.settings.label_map
        signals: dict[str, dict[str, float | None]] = {}
        for sid in ids:
            pre = ctx.pre(plan.cohort, sid, pcfg)
            if pre.labels is not None:
                signals[sid] = record_signals(
                    target, pre.image, pre.labels, pre.mask, label_map, ctx.device, sid
                )
        record = {
            "arch": run.arch,
            "variant": run.variant,
            "fold": fold.index,
            "signal": SIGNALS[0],
            "members": list(fold.private_set),
            "holdout": list(plan.holdout_ids),
            "signals": signals,
        }
        return [atomic_write_json(path, record)]

    ctx.stages.run(f"fold{fold.index}/{run.arch}_{run.variant}/record-losses", stage_key, work)


def record_signals(
    model: Any,
    image: np.ndarray,
    labels: np.ndarray,
    mask: np.ndarray | None,
    label_map: dict[int, int] | None,
    device: str | None,
    name: str = "labels",
) -> dict[str, float | None]:
    """One forward pass of ``model`` on ``image``: the mean log-probability of the true
    classes inside ``mask`` (every voxel when it is empty) and the mean Dice."""
    import numpy as np
    import torch

    from ..metrics.dice import dice
    from ..training.loop import autocast, memory_format, stack_images, to_device
    from ..training.target import apply_label_map, model_device

    truth = apply_label_map(labels, label_map, name)
    dev = model_device(model, device)
    model.eval().to(dev, memory_format=memory_format(dev))
    with torch.no_grad():
        x = to_device(stack_images([image]), dev)
        with autocast(dev):
            logits = model(x)
        logp = torch.log_softmax(logits.float(), dim=1)[0]
        y = torch.from_numpy(truth).to(dev)
        if int(y.max()) >= logp.shape[0]:
            raise StudyError(f"{name}: class {int(y.max())} beyond the target's {logp.shape[0]}")
        per_voxel = logp.gather(0, y[None])[0].cpu().numpy().astype(np.float64)
        pred = logp.argmax(0).cpu().numpy()
    inside = np.asarray(mask, bool) if mask is not None else np.ones(truth.shape, bool)
    if not inside.any():
        inside = np.ones(truth.shape, bool)
    _, mean_dice = dice(pred, truth)
    return {"log_likelihood": _num(float(per_voxel[inside].mean())), "dice": _num(mean_dice)}


def _num(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _check(path: Path, record: Any) -> dict:
    """A record whose fields have the types the analysis needs, else ``StudyError``."""

    def bad(what: str) -> StudyError:
        return StudyError(f"{path}: record losses: {what}")

    if not isinstance(record, dict):
        raise bad("not a JSON object")
    for k in ("arch", "variant"):
        if not isinstance(record.get(k), str):
            raise bad(f"{k!r} must be a string")
    if not isinstance(record.get("fold"), int) or isinstance(record.get("fold"), bool):
        raise bad("'fold' must be an integer")
    for k in ("members", "holdout"):
        ids = record.get(k)
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            raise bad(f"{k!r} must be a list of ids")
    signals = record.get("signals")
    if not isinstance(signals, dict):
        raise bad("'signals' must map subject ids to their signals")
    for sid, values in signals.items():
        if not isinstance(values, dict) or not all(
            v is None or (isinstance(v, int | float) and not isinstance(v, bool))
            for v in values.values()
        ):
            raise bad(f"subject {sid!r}: signals must be numbers or null")
    return record


def read_record_losses(paths: StudyPaths) -> list[dict]:
    """Every ``record_losses/*.json`` (one per undefended fold target), in name order; empty
    without any. A damaged or malformed record is left out with a warning naming the file
    (the analysis then has one reference model fewer, and says how many it used)."""
    import logging

    folder = paths.record_losses_dir
    if not folder.is_dir():
        return []
    records = []
    for path in sorted(folder.glob("*.json")):
        try:
            records.append(_check(path, read_json(path, StudyError, "record losses")))
        except StudyError as exc:
            logging.getLogger(__name__).warning("%s", exc)
    return records
