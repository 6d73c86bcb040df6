"""Reconstructing images from their latent codes, and writing them back to a subject's grid."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..data.cohort import Subject
from ..data.preprocess import PreprocessConfig, Preprocessed, preprocess_subject
from ..data.sidecar import preprocess_config
from ..errors import CheckpointError
from ..io import Volume, write_volume
from ..io.paths import output_path
from ..progress import ProgressCallback, report
from ..training.loop import autocast, memory_format, stack_images, to_device
from ..training.target import model_device
from .decoder import InversionDecoder, check_decoder_matches

__all__ = [
    "SubjectReconstruction",
    "reconstruct",
    "reconstruct_many",
    "checkpoint_preprocess",
    "reconstruct_subject",
    "reconstruct_volume",
    "write_reconstruction",
]


@torch.no_grad()
def reconstruct(
    target_model: nn.Module,
    decoder: InversionDecoder,
    image: np.ndarray,
    device: str | None = "auto",
) -> np.ndarray:
    """D^(Enc(X)) for one preprocessed image: float32 in [0, 1] on the preprocessed grid.

    Both networks are put in eval mode and moved to ``device`` (``None``: the target's device).
    The decoder sees only what its threat model allows.
    """
    check_decoder_matches(target_model, decoder)
    dev = model_device(target_model, device)
    fmt = memory_format(dev)
    target_model.eval().to(dev, memory_format=fmt)
    decoder.eval().to(dev, memory_format=fmt)
    x = to_device(stack_images([image]), dev)
    with autocast(dev):
        out = decoder(target_model.encode(x).for_threat_model(decoder.threat_model))
    return out[0, 0].float().clamp(0.0, 1.0).cpu().numpy().astype(np.float32)


def reconstruct_many(
    target_model: nn.Module,
    decoder: InversionDecoder,
    images: list[np.ndarray],
    device: str | None = "auto",
    progress: ProgressCallback | None = None,
) -> list[np.ndarray]:
    """:func:`reconstruct` for several images, reporting ``(done, total, "reconstruct")``."""
    out = []
    for k, image in enumerate(images):
        out.append(reconstruct(target_model, decoder, image, device))
        report(progress, k + 1, len(images), "reconstruct")
    return out


def write_reconstruction(
    path: str | os.PathLike[str],
    reconstruction: np.ndarray,
    preprocessed: Preprocessed,
    grid: str = "source",
) -> Path:
    """Write a reconstruction as NIfTI, atomically.

    ``grid="source"`` resamples it onto the subject's original file grid and affine
    (:meth:`Preprocessed.to_source`); ``grid="preprocessed"`` keeps the preprocessed grid.
    """
    if grid == "source":
        return write_volume(path, preprocessed.to_source(reconstruction))
    if grid == "preprocessed":
        if reconstruction.shape != preprocessed.shape:
            raise ValueError(
                f"{preprocessed.subject_id}: reconstruction shape {reconstruction.shape} "
                f"is not the preprocessed shape {preprocessed.shape}"
            )
        return write_volume(path, np.asarray(reconstruction, np.float32), preprocessed.affine)
    raise ValueError(f"grid must be 'source' or 'preprocessed', got {grid!r}")


@dataclass(eq=False)
class SubjectReconstruction:
    """A subject's reconstruction on its preprocessed grid, and the files written, if any."""

    preprocessed: Preprocessed
    array: np.ndarray
    files: dict[str, Path] = field(default_factory=dict)

    def on_source_grid(self) -> Volume:
        """The reconstruction resampled onto the subject's original file grid and affine."""
        return self.preprocessed.to_source(self.array)


def checkpoint_preprocess(
    target_model: nn.Module, decoder: InversionDecoder, preprocess: PreprocessConfig | None = None
) -> PreprocessConfig:
    """``preprocess``, else the config in the decoder's (else the target's) checkpoint sidecar."""
    if preprocess is None:
        preprocess = preprocess_config(getattr(decoder, "metadata", {})) or preprocess_config(
            getattr(target_model, "metadata", {})
        )
    if preprocess is None:
        raise CheckpointError("no preprocess config given and none in the checkpoint sidecars")
    return preprocess


def reconstruct_subject(
    target_model: nn.Module,
    decoder: InversionDecoder,
    subject: Subject,
    preprocess: PreprocessConfig | None = None,
    device: str | None = "auto",
    out_dir: str | os.PathLike[str] | None = None,
    preprocess_fn: Callable[[Subject, PreprocessConfig], Preprocessed] = preprocess_subject,
) -> SubjectReconstruction:
    """Preprocess ``subject`` as the networks were trained, reconstruct it, optionally write it.

    ``preprocess`` defaults to the config in the decoder's (else the target's) checkpoint
    sidecar. With ``out_dir``, ``<id>_recon.nii.gz`` (original grid and affine) and
    ``<id>_recon_pre.nii.gz`` (preprocessed grid) are written atomically. ``preprocess_fn``
    runs :func:`~inversion_audit.data.preprocess_subject` (e.g. in a child process).
    """
    preprocess = checkpoint_preprocess(target_model, decoder, preprocess)
    pre = preprocess_fn(subject, preprocess)
    result = SubjectReconstruction(pre, reconstruct(target_model, decoder, pre.image, device))
    if out_dir is not None:
        out = Path(out_dir)
        for grid, name in (("source", "recon"), ("preprocessed", "recon_pre")):
            path = output_path(out, f"{subject.id}_{name}.nii.gz")
            result.files[grid] = write_reconstruction(path, result.array, pre, grid=grid)
    return result


def reconstruct_volume(
    target_model: nn.Module,
    decoder: InversionDecoder,
    image: Volume,
    labels: Volume | None = None,
    preprocess: PreprocessConfig | None = None,
    device: str | None = "auto",
    preprocessed: bool = False,
    preprocess_fn: Callable[[Subject, PreprocessConfig], Preprocessed] | None = None,
) -> np.ndarray:
    """D^(Enc(X)) of an image volume (not a cohort file), on the volume's own grid.

    The volume (with ``labels`` as the brain mask when the config skull-strips) is written
    to a temporary folder as a one-subject cohort and goes through
    :func:`reconstruct_subject`, so it is preprocessed exactly as every subject is (nothing
    is cached). With ``preprocessed`` the volume already is on the config's grid and is
    reconstructed as it is.
    """
    import tempfile

    from ..errors import VolumeError

    preprocess = checkpoint_preprocess(target_model, decoder, preprocess)
    name = image.meta.get("layer", image.name)
    if preprocessed:
        if preprocess.shape is not None and image.shape != tuple(preprocess.shape):
            raise VolumeError(
                f"{name}: shape {image.shape} is not the preprocessed shape "
                f"{tuple(preprocess.shape)} of the checkpoint; it is not preprocessed"
            )
        array = np.clip(image.array, 0.0, 1.0).astype(np.float32)
        return reconstruct(target_model, decoder, array, device)
    if preprocess.skull_strip != "none" and labels is None:
        raise VolumeError(
            f"{name}: the checkpoint expects skull-stripped input "
            f"(skull_strip={preprocess.skull_strip!r}): give the subject's labels or brain mask"
        )
    with tempfile.TemporaryDirectory(prefix="inversion-audit-") as tmp:
        image_file = write_volume(Path(tmp) / "input_image.nii", image)
        labels_file = (
            write_volume(Path(tmp) / "input_labels.nii", labels) if labels is not None else None
        )
        by_mask = preprocess.skull_strip == "mask"
        subject = Subject(
            "input",
            image_file,
            labels=None if by_mask else labels_file,
            mask=labels_file if by_mask else None,
        )
        result = reconstruct_subject(
            target_model,
            decoder,
            subject,
            preprocess,
            device,
            preprocess_fn=preprocess_fn or partial(preprocess_subject, use_cache=False),
        )
        return np.asarray(result.on_source_grid().array, dtype=np.float32)
