"""Reconstructing images from their latent codes, and writing them back to a subject's grid."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
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
    "reconstruct_subject",
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


def reconstruct_subject(
    target_model: nn.Module,
    decoder: InversionDecoder,
    subject: Subject,
    preprocess: PreprocessConfig | None = None,
    device: str | None = "auto",
    out_dir: str | os.PathLike[str] | None = None,
) -> SubjectReconstruction:
    """Preprocess ``subject`` as the networks were trained, reconstruct it, optionally write it.

    ``preprocess`` defaults to the config in the decoder's (else the target's) checkpoint
    sidecar. With ``out_dir``, ``<id>_recon.nii.gz`` (original grid and affine) and
    ``<id>_recon_pre.nii.gz`` (preprocessed grid) are written atomically.
    """
    if preprocess is None:
        preprocess = preprocess_config(getattr(decoder, "metadata", {})) or preprocess_config(
            getattr(target_model, "metadata", {})
        )
    if preprocess is None:
        raise CheckpointError("no preprocess config given and none in the checkpoint sidecars")
    pre = preprocess_subject(subject, preprocess)
    result = SubjectReconstruction(pre, reconstruct(target_model, decoder, pre.image, device))
    if out_dir is not None:
        out = Path(out_dir)
        for grid, name in (("source", "recon"), ("preprocessed", "recon_pre")):
            path = output_path(out, f"{subject.id}_{name}.nii.gz")
            result.files[grid] = write_reconstruction(path, result.array, pre, grid=grid)
    return result
