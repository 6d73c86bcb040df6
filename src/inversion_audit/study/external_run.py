"""A study's run on an external model (``[model]``): no k-fold, no target training.

The members (``model.members`` / ``members_file``) are the private set; the attack set is
the cohort's other subjects (or ``cohort.attack_path``), less the non-member holdout
(``[cohort] holdout`` / ``holdout_n`` / ``holdout_path``), which trains neither the model
(a member in it is refused) nor the decoder. For each variant and threat model the
inversion decoder is trained against the frozen external network, the members and the
holdout are reconstructed, and every reconstruction is scored against every candidate in
one gallery, as in the paper's runs. The run is named ``external_<variant>_<threat>`` (fold 0);
``external_model.json`` records the model, its tapped latent and where the preprocessing
differs from the model's own (:attr:`~.layout.StudyPaths.external_record`); the report shows it. With the ``dice`` metric, the model's
own segmentation is scored (Dice of members and holdout, the membership signal 1 - Dice)
when its output classes are the config's (``target.label_map``: background + groups), and
recorded as not comparable otherwise.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ..data import Fold
from ..errors import ConfigError
from .config import StudyConfig
from .model_source import ModelSource, model_path

if TYPE_CHECKING:
    from collections.abc import Callable

    import numpy as np

    from ..models.external import ExternalModel
    from .context import StudyContext
    from .plan import StudyPlan
    from .resolved import StudyInputs

__all__ = ["load_models", "own_segmentation"]


def _load(config: StudyConfig, source: ModelSource, grid: tuple[int, ...] | None) -> ExternalModel:
    """The external model on the variant's grid (nnU-Net's own preprocessing replaces the
    study's in the plan)."""
    from ..models.external import load_external

    path = model_path(source.path, config.source)
    where = config.source or "config"
    if not path.exists():
        raise ConfigError(f"{where}: model.path = {source.path!r}: not found at {path}")
    try:
        model = load_external(
            source.source,
            path,
            network=source.network,
            network_args=source.network_args,
            fold=source.fold,
            grid=grid,
            latent=source.latent,
        )
    except ConfigError as exc:  # name the study config as well as the model's files
        raise ConfigError(f"{where}: [model] {exc}") from exc
    if model.in_channels != 1:
        raise ConfigError(
            f"{where}: [model] {model.channels_key}: the cohort gives one image per subject; "
            f"this model ({model.weights}) takes {model.in_channels}"
        )
    if model.preprocess is None and tuple(model.grid) != tuple(grid or ()):
        raise ConfigError(f"{path}: model grid {model.grid} is not the preprocessing shape {grid}")
    return model


def load_models(config: StudyConfig, inputs: StudyInputs) -> Mapping[str, ExternalModel]:
    """With ``[model]``: each variant's external model, loaded and checked on the variant's
    common grid before anything is written (empty without ``[model]``)."""
    if config.model is None:
        return {}
    return {v: _load(config, config.model, inputs.pre_configs[v].shape) for v in config.variants}


def _config_classes(
    plan: StudyPlan, ctx: StudyContext, fold: Fold, variant: str, tcfg: Any
) -> int | None:
    """The classes the config's labels give (background included); ``None`` without labels."""
    if tcfg.n_classes is not None:
        return tcfg.n_classes
    if tcfg.label_map:
        return max(tcfg.label_map.values()) + 1
    pcfg = ctx.fold_pre_config(plan, variant, fold)
    labels = [ctx.pre(plan.cohort, i, pcfg).labels for i in fold.private_set]
    if any(lab is None for lab in labels):
        return None
    return max(2, max(int(lab.max()) for lab in labels) + 1)  # as training a target counts them


def own_segmentation(
    plan: StudyPlan, ctx: StudyContext, model: ExternalModel, fold: Fold, variant: str
) -> tuple[tuple[Callable[[np.ndarray], np.ndarray], dict | None] | None, str | None]:
    """The model's own segmentation for the ``dice`` metric, and the record's sentence.

    ``((segment_fn, label_map), sentence)`` when the model's output classes are the
    config's, ``(None, sentence)`` when not comparable, ``(None, None)`` without ``dice``.
    """
    import numpy as np
    import torch

    from ..training import segment

    if "dice" not in plan.config.matching.metrics:
        return None, None
    # label_map and n_classes are the [target] table's, whatever the architecture
    tcfg = plan.config.target.settings
    wanted = _config_classes(plan, ctx, fold, variant, tcfg)
    if wanted is None:
        return None, "not comparable: the cohort has no labels for the members"
    target = model.target()
    device = next(target.parameters()).device
    with torch.no_grad():  # one forward pass on the model's grid counts its output classes
        out = target(torch.zeros((1, model.in_channels, *model.grid), device=device))
    given = int((out[0] if isinstance(out, list | tuple) else out).shape[1])
    if given != wanted:
        return None, (
            f"not comparable: the model gives {given} classes, the config's labels "
            f"(target.label_map: background + groups) {wanted}; no Dice"
        )
    back = tuple(int(a) for a in np.argsort(model.axes))  # network axes -> the project's

    def segment_fn(image: np.ndarray) -> np.ndarray:
        return np.transpose(segment(target, image, device=ctx.device), back)

    return (segment_fn, tcfg.label_map), f"the model's own segmentation ({given} classes)"
