"""The widgets' compute functions: plain functions, no Qt, run in workers.

Each takes the core's ``progress`` callback (which may raise
:class:`~inversion_audit.errors.JobCancelled`) and returns napari layer data tuples or
plain results; the widgets turn those into layers on the UI thread. Heavy imports
(torch, ants) happen inside the functions. Functions run in a child process (ANTs) are
module-level so that they can be pickled by name. The Deformation widget's functions are in
:mod:`._registration`.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache, partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..io import Volume, read_labels, read_volume
from ..metrics.comparison import Comparison, align_to, compare_volumes
from ..progress import ProgressCallback, report
from ._display import OVERLAY_BLENDING, OVERLAY_OPACITY, comparison_window
from ._layers import volume_layer_kwargs

if TYPE_CHECKING:
    from ..study.index import ReconstructionEntry, StudyIndex

__all__ = [
    "Comparison",
    "LABELS_LAYER",
    "LayerData",
    "LoadedModels",
    "META_KEY",
    "ORIGINAL_LAYER",
    "RECONSTRUCTION_LAYER",
    "align_to",
    "check_checkpoints",
    "checkerboard",
    "compare_volumes",
    "curtain",
    "load_candidate_layer",
    "load_entry_layers",
    "load_models",
    "reconstruct_volume",
    "reconstruction_layer_name",
]

LayerData = tuple[Any, dict[str, Any], str]

#: layer.metadata key under which the widgets record where a layer comes from
META_KEY = "inversion_audit"


def _meta(study: StudyIndex, role: str, **extra: Any) -> dict[str, Any]:
    return {META_KEY: {"study": str(study.root), "role": role, **extra}}


#: the short layer names of a selection (details in the layer's metadata ``title``)
ORIGINAL_LAYER, RECONSTRUCTION_LAYER, LABELS_LAYER = "original", "recon", "labels"


def reconstruction_layer_name(entry: ReconstructionEntry, k: int = 0) -> str:
    """The layer name of the ``k``-th reconstruction of a selection: ``recon`` for the
    selected run, ``recon 2``, ``recon 3``... for the subject's other runs."""
    return RECONSTRUCTION_LAYER if k == 0 else f"{RECONSTRUCTION_LAYER} {k + 1}"


def load_entry_layers(
    study: StudyIndex,
    entry: ReconstructionEntry,
    all_runs: bool = False,
    progress: ProgressCallback | None = None,
) -> list[LayerData]:
    """A reconstruction's layers: its original (preprocessed, as compared), the
    reconstruction(s) on the same grid, and the subject's labels when available.

    With ``all_runs`` every run's reconstruction of the subject is loaded. The images share
    the comparison's window (:mod:`._display`); the reconstruction lies over the original at
    the Compare tab's default opacity and blending.
    """
    sid = entry.reconstruction_id
    entries = [e for e in study.entries if e.reconstruction_id == sid] if all_runs else [entry]
    entries = sorted(entries, key=lambda e: e.run != entry.run)  # the selected run first
    total = len(entries) + 2
    report(progress, 0, total, "original")
    original = read_volume(study.candidate_file(entry.variant, sid))
    recons = []
    for k, e in enumerate(entries):
        report(progress, k + 1, total, f"reconstruction {k + 1}")
        recons.append(read_volume(study.reconstruction_file(e)))
    window = comparison_window([original.array, *(r.array for r in recons)], original.array)
    layers: list[LayerData] = [
        (
            original.array,
            volume_layer_kwargs(
                original,
                ORIGINAL_LAYER,
                colormap="gray",
                contrast_limits=window,
                metadata=_meta(
                    study,
                    "original",
                    subject=sid,
                    variant=entry.variant,
                    title=f"{sid} original ({entry.variant}, preprocessed)",
                ),
            ),
            "image",
        )
    ]
    for k, (e, recon) in enumerate(zip(entries, recons, strict=True)):
        layers.append(
            (
                recon.array,
                volume_layer_kwargs(
                    recon,
                    reconstruction_layer_name(e, k),
                    colormap="gray",
                    contrast_limits=window,
                    opacity=OVERLAY_OPACITY,
                    blending=OVERLAY_BLENDING,
                    metadata=_meta(
                        study,
                        "reconstruction",
                        subject=sid,
                        run=e.run,
                        variant=e.variant,
                        title=f"{sid} reconstruction ({e.run})",
                    ),
                ),
                "image",
            )
        )
    report(progress, total - 1, total, "labels")
    labels_file = study.labels_file(entry.variant, sid)
    if labels_file is not None:
        labels = read_labels(labels_file)
        layers.append(
            (
                labels.array,
                volume_layer_kwargs(
                    labels,
                    LABELS_LAYER,
                    opacity=0.4,
                    metadata=_meta(study, "labels", subject=sid, title=f"{sid} labels"),
                ),
                "labels",
            )
        )
    report(progress, total, total, "loaded")
    return layers


def load_candidate_layer(
    study: StudyIndex,
    entry: ReconstructionEntry,
    candidate_id: str,
    reconstruction_geometry: dict[str, Any],
    name: str,
    progress: ProgressCallback | None = None,
) -> LayerData:
    """A candidate original (preprocessed) placed voxel for voxel on the reconstruction's grid,
    the way it was scored."""
    report(progress, 0, 1, f"candidate {name}")
    cand = read_volume(study.candidate_file(entry.variant, candidate_id))
    kwargs = {
        "name": name,
        "colormap": "gray",
        **reconstruction_geometry,
        "metadata": _meta(
            study,
            "candidate",
            subject=candidate_id,
            run=entry.run,
            variant=entry.variant,
            title=f"candidate {candidate_id} ({entry.variant}, preprocessed)",
        ),
    }
    report(progress, 1, 1, f"candidate {name}")
    return cand.array, kwargs, "image"


# -- models ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LoadedModels:
    """A target network, its inversion decoder and the decoder's preprocessing config."""

    target: Any
    decoder: Any
    preprocess: Any
    device: str


@lru_cache(maxsize=4)
def _load_models_cached(
    target: str, target_mtime: int, inversion: str, inversion_mtime: int, device: str
) -> LoadedModels:
    from ..attack_pair import load_attack_pair

    pair = load_attack_pair(target, inversion, device)
    return LoadedModels(pair.target, pair.decoder, pair.preprocess, pair.device)


def load_models(target: str | Path, inversion: str | Path, device: str = "auto") -> LoadedModels:
    """Load (or reuse) a target checkpoint, or an external model (MONAI weights, bundle or
    nnU-Net folder), and its inversion decoder on ``device``
    (:func:`~inversion_audit.attack_pair.load_attack_pair`).

    Models are cached by path, modification time and device, so a second run with the
    same files reuses them and an overwritten checkpoint is reloaded. Raises
    :class:`~inversion_audit.errors.CheckpointError` naming the file.
    """
    from ..attack_pair import model_stamp

    target, inversion = Path(target), Path(inversion)
    return _load_models_cached(
        str(target), model_stamp(target), str(inversion), model_stamp(inversion), device
    )


def check_checkpoints(
    target: str | Path,
    inversion: str | Path,
    device: str = "cpu",
    progress: ProgressCallback | None = None,
) -> LoadedModels:
    """:func:`load_models` with progress reports (for the Open study widget's check)."""
    report(progress, 0, 1, "load checkpoints")
    models = load_models(target, inversion, device)
    report(progress, 1, 1, "load checkpoints")
    return models


# -- reconstruct -------------------------------------------------------------------------------
def _preprocess(subject: Any, config: Any, progress: ProgressCallback | None = None) -> Any:
    from ..data import preprocess_subject

    return preprocess_subject(subject, config, use_cache=False)


def _preprocess_in_child(
    subject: Any, config: Any, progress: ProgressCallback | None = None
) -> Any:
    """The core preprocessing in a child process (N4 runs in ANTs, which holds the GIL)."""
    from ._subprocess import call_in_subprocess

    return call_in_subprocess(_preprocess, subject, config, progress=progress)


def reconstruct_volume(
    volume: Volume,
    target: str | Path,
    inversion: str | Path,
    device: str = "auto",
    labels: Volume | None = None,
    preprocessed: bool = False,
    progress: ProgressCallback | None = None,
) -> np.ndarray:
    """D^(Enc(X)) of an image volume on the volume's own grid:
    :func:`inversion_audit.attack.reconstruct_volume` with the inversion checkpoint's models
    and recorded preprocessing (in a child process when it runs N4)."""
    from ..attack import reconstruct_volume as reconstruct_core

    report(progress, 0, 2, "load models")
    models = load_models(target, inversion, device)
    report(progress, 1, 2, f"preprocess and reconstruct on {models.device}")
    out = reconstruct_core(
        models.target,
        models.decoder,
        volume,
        labels,
        models.preprocess,
        models.device,
        preprocessed=preprocessed,
        preprocess_fn=partial(_preprocess_in_child, progress=progress)
        if models.preprocess.bias_correction
        else None,
    )
    report(progress, 2, 2, "done")
    return out


# -- compare -----------------------------------------------------------------------------------
def checkerboard(a: np.ndarray, b: np.ndarray, tile: int) -> np.ndarray:
    """``a`` and ``b`` interleaved in cubes of ``tile`` voxels."""
    idx = np.indices(a.shape, sparse=True)
    parity = sum(i // max(int(tile), 1) for i in idx) % 2
    return np.where(parity == 0, a, b).astype(np.float32)


def curtain(a: np.ndarray, b: np.ndarray, axis: int, fraction: float) -> np.ndarray:
    """``a`` before ``fraction`` of the way along ``axis``, ``b`` after it."""
    cut = int(round(float(np.clip(fraction, 0.0, 1.0)) * a.shape[axis]))
    shape = [1] * a.ndim
    shape[axis] = a.shape[axis]
    before = (np.arange(a.shape[axis]) < cut).reshape(shape)
    return np.where(before, a, b).astype(np.float32)
