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

from ..errors import CheckpointError
from ..io import Volume, read_labels, read_volume
from ..metrics.comparison import Comparison, align_to, compare_volumes
from ..progress import ProgressCallback, report
from ._layers import volume_layer_kwargs

if TYPE_CHECKING:
    from ..study.index import ReconstructionEntry, StudyIndex

__all__ = [
    "Comparison",
    "LayerData",
    "LoadedModels",
    "META_KEY",
    "align_to",
    "check_checkpoints",
    "checkerboard",
    "compare_volumes",
    "curtain",
    "display_scale",
    "load_candidate_layer",
    "load_entry_layers",
    "load_models",
    "original_layer_name",
    "reconstruct_volume",
    "reconstruction_layer_name",
]

LayerData = tuple[Any, dict[str, Any], str]

#: layer.metadata key under which the widgets record where a layer comes from
META_KEY = "inversion_audit"


def _meta(study: StudyIndex, role: str, **extra: Any) -> dict[str, Any]:
    return {META_KEY: {"study": str(study.root), "role": role, **extra}}


def original_layer_name(subject_id: str) -> str:
    return f"{subject_id} original"


def reconstruction_layer_name(entry: ReconstructionEntry) -> str:
    return f"{entry.reconstruction_id} reconstruction ({entry.run})"


def load_entry_layers(
    study: StudyIndex,
    entry: ReconstructionEntry,
    all_runs: bool = False,
    progress: ProgressCallback | None = None,
) -> list[LayerData]:
    """A reconstruction's layers: its original (preprocessed, as compared), the
    reconstruction(s) on the same grid, and the subject's labels when available.

    With ``all_runs`` every run's reconstruction of the subject is loaded.
    """
    sid = entry.reconstruction_id
    entries = [e for e in study.entries if e.reconstruction_id == sid] if all_runs else [entry]
    entries = sorted(entries, key=lambda e: e.run != entry.run)  # the selected run first
    total = len(entries) + 2
    report(progress, 0, total, f"{sid}: original")
    original = read_volume(study.candidate_file(entry.variant, sid))
    layers: list[LayerData] = [
        (
            original.array,
            volume_layer_kwargs(
                original,
                original_layer_name(sid),
                colormap="gray",
                metadata=_meta(study, "original", subject=sid, variant=entry.variant),
            ),
            "image",
        )
    ]
    for k, e in enumerate(entries):
        report(progress, k + 1, total, f"{sid}: reconstruction {e.run}")
        recon = read_volume(study.reconstruction_file(e))
        layers.append(
            (
                recon.array,
                volume_layer_kwargs(
                    recon,
                    reconstruction_layer_name(e),
                    colormap="gray",
                    metadata=_meta(
                        study, "reconstruction", subject=sid, run=e.run, variant=e.variant
                    ),
                ),
                "image",
            )
        )
    report(progress, total - 1, total, f"{sid}: labels")
    labels_file = study.labels_file(entry.variant, sid)
    if labels_file is not None:
        labels = read_labels(labels_file)
        layers.append(
            (
                labels.array,
                volume_layer_kwargs(
                    labels,
                    f"{sid} labels",
                    opacity=0.4,
                    metadata=_meta(study, "labels", subject=sid),
                ),
                "labels",
            )
        )
    report(progress, total, total, f"{sid}: loaded")
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
            study, "candidate", subject=candidate_id, run=entry.run, variant=entry.variant
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


#: the files of a MONAI bundle or nnU-Net folder whose change reloads the model
_MODEL_FILES = ("configs/*", "models/*", "*.json", "fold_*/checkpoint_*.pth")


def _mtime(path: Path) -> int:
    """Modification time of a checkpoint and its sidecar, or of a model folder's configs,
    plans and weights (a change to any of them reloads it)."""
    if path.is_dir():
        stamps = [f.stat().st_mtime_ns for g in _MODEL_FILES for f in path.glob(g) if f.is_file()]
        return max(stamps, default=path.stat().st_mtime_ns)
    try:
        stamp = path.stat().st_mtime_ns
    except OSError:
        raise CheckpointError(f"{path}: checkpoint not found") from None
    sidecar = path.with_suffix(".json")
    return max(stamp, sidecar.stat().st_mtime_ns) if sidecar.is_file() else stamp


@lru_cache(maxsize=4)
def _load_models_cached(
    target: str, target_mtime: int, inversion: str, inversion_mtime: int, device: str
):
    from ..checkpoints import (
        is_external_decoder,
        load_inversion,
        load_target,
        load_with_decoder,
        preprocess_config,
    )
    from ..devices import get_device
    from ..models.external import is_model_folder

    dev = str(get_device(device))
    if is_model_folder(target) or is_external_decoder(inversion):
        # an external model, rebuilt as the decoder's sidecar records it (weights' hash checked)
        return LoadedModels(*load_with_decoder(target, inversion, dev), dev)
    target_model = load_target(target, device=dev)
    decoder = load_inversion(inversion, target=target_model, device=dev)
    try:
        config = preprocess_config(decoder.metadata)
    except CheckpointError as exc:
        raise CheckpointError(f"{inversion}: {exc}") from exc
    if config is None:
        raise CheckpointError(
            f"{inversion}: sidecar has no 'preprocess' config to prepare inputs with"
        )
    return LoadedModels(target_model, decoder, config, dev)


def load_models(target: str | Path, inversion: str | Path, device: str = "auto") -> LoadedModels:
    """Load (or reuse) a target checkpoint, or an external model (MONAI weights, bundle or
    nnU-Net folder), and its inversion decoder on ``device``.

    Models are cached by path, modification time and device, so a second run with the
    same files reuses them and an overwritten checkpoint is reloaded. Raises
    :class:`CheckpointError` naming the file.
    """
    target, inversion = Path(target), Path(inversion)
    return _load_models_cached(
        str(target), _mtime(target), str(inversion), _mtime(inversion), device
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


def display_scale(array: np.ndarray) -> np.ndarray:
    """An image in [0, 1] as is; any other range robustly scaled to [0, 1] (0.5-99.5 percentiles)."""
    array = np.asarray(array, np.float32)
    if array.min() >= 0.0 and array.max() <= 1.0:
        return array
    lo, hi = np.percentile(array, (0.5, 99.5))
    return np.clip((array - lo) / max(hi - lo, 1e-6), 0.0, 1.0).astype(np.float32)
