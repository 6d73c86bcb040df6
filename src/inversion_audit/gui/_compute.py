"""The widgets' compute functions: plain functions, no Qt, run in workers.

Each takes the core's ``progress`` callback (which may raise
:class:`~inversion_audit.errors.JobCancelled`) and returns napari layer data tuples or
plain results; the widgets turn those into layers on the UI thread. Heavy imports
(torch, ants) happen inside the functions. Functions run in a child process (ANTs) are
module-level so that they can be pickled by name.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from ..errors import CheckpointError
from ..io import read_labels, read_volume
from ..progress import ProgressCallback, report
from ._layers import volume_layer_kwargs
from ._study_index import ReconstructionEntry, StudyIndex

__all__ = [
    "LayerData",
    "LoadedModels",
    "META_KEY",
    "check_checkpoints",
    "load_candidate_layer",
    "load_entry_layers",
    "load_models",
    "original_layer_name",
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
        "metadata": _meta(study, "candidate", subject=candidate_id, run=entry.run),
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


def _mtime(path: Path) -> int:
    try:
        return path.stat().st_mtime_ns
    except OSError:
        raise CheckpointError(f"{path}: checkpoint not found") from None


@lru_cache(maxsize=4)
def _load_models_cached(
    target: str, target_mtime: int, inversion: str, inversion_mtime: int, device: str
):
    from ..checkpoints import load_inversion, load_target, read_metadata
    from ..data import PreprocessConfig
    from ..devices import get_device

    dev = str(get_device(device))
    target_model = load_target(target, device=dev)
    decoder = load_inversion(inversion, target=target_model, device=dev)
    meta = read_metadata(inversion)
    if "preprocess" not in meta:
        raise CheckpointError(
            f"{inversion}: sidecar has no 'preprocess' config to prepare inputs with"
        )
    try:
        config = PreprocessConfig.from_dict(meta["preprocess"])
    except Exception as exc:
        raise CheckpointError(
            f"{inversion}: invalid 'preprocess' config in sidecar ({exc})"
        ) from exc
    return LoadedModels(target_model, decoder, config, dev)


def load_models(target: str | Path, inversion: str | Path, device: str = "auto") -> LoadedModels:
    """Load (or reuse) a target checkpoint and its inversion decoder on ``device``.

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
