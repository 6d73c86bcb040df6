"""Cohorts: subjects with an image, optional labels and an optional brain mask."""

from __future__ import annotations

import csv
import os
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import CohortError, VolumeError
from ..io import Volume, read_labels, read_volume
from ..io.paths import check_subject_id
from ..io.untrusted import not_utf8

__all__ = [
    "Subject",
    "Cohort",
    "CohortIssue",
    "load_cohort",
    "validate_cohort",
    "require_valid",
    "label_problem",
    "check_labels",
    "DEFAULT_IMAGE_PATTERN",
    "DEFAULT_LABELS_PATTERN",
]

#: ``{id}`` is replaced by the subject id; searched in the folder and its ``t1/``/``seg/`` subfolders.
DEFAULT_IMAGE_PATTERN = "{id}_T1.nii.gz"
DEFAULT_LABELS_PATTERN = "{id}_seg.nii.gz"
DEFAULT_MASK_PATTERN = "{id}_mask.nii.gz"
#: a CSV manifest larger than this is refused before it is parsed
MAX_MANIFEST_BYTES = 16 * 2**20


@dataclass(frozen=True)
class Subject:
    """One subject of a cohort."""

    id: str
    image: Path
    labels: Path | None = None
    mask: Path | None = None

    def files(self) -> dict[str, Path]:
        """The subject's files by role."""
        out = {"image": self.image}
        if self.labels is not None:
            out["labels"] = self.labels
        if self.mask is not None:
            out["mask"] = self.mask
        return out


@dataclass
class Cohort:
    """An ordered list of subjects with unique ids."""

    subjects: list[Subject]
    root: Path | None = None
    name: str = "cohort"

    def __post_init__(self) -> None:
        for s in self.subjects:
            check_subject_id(s.id, self.root or self.name)
        dup = [i for i, n in Counter(s.id for s in self.subjects).items() if n > 1]
        if dup:
            files = "; ".join(
                f"{i} ({', '.join(str(s.image) for s in self.subjects if s.id == i)})"
                for i in sorted(dup)
            )
            raise CohortError(f"{self.root or self.name}: duplicate subject ids: {files}")
        self._by_id = {s.id: s for s in self.subjects}

    def __len__(self) -> int:
        return len(self.subjects)

    def __iter__(self) -> Iterator[Subject]:
        return iter(self.subjects)

    def __getitem__(self, key: str | int) -> Subject:
        if isinstance(key, int):
            return self.subjects[key]
        try:
            return self._by_id[key]
        except KeyError:
            raise CohortError(f"{self.root or self.name}: no subject {key!r} in cohort") from None

    @property
    def ids(self) -> list[str]:
        return [s.id for s in self.subjects]

    def subset(self, ids: list[str] | tuple[str, ...]) -> Cohort:
        """The cohort restricted to ``ids`` (in that order); a missing id is an error."""
        return Cohort([self[i] for i in ids], self.root, self.name)


@dataclass(frozen=True)
class CohortIssue:
    """A validation finding for one subject and file."""

    subject: str
    file: str
    problem: str
    severity: str = "error"

    def __str__(self) -> str:
        return f"{self.subject}: {self.file}: {self.problem}"


def _id_regex(pattern: str) -> re.Pattern[str]:
    head, _, tail = pattern.partition("{id}")
    return re.compile("^" + re.escape(head) + "(?P<id>.+?)" + re.escape(tail) + "$")


def _find(root: Path, pattern: str, sid: str, subdirs: tuple[str, ...]) -> Path | None:
    name = pattern.format(id=sid)
    for sub in ("", *subdirs):
        cand = root / sub / name
        if cand.exists():
            return cand
    return None


def _from_folder(
    root: Path, image_pattern: str, labels_pattern: str | None, mask_pattern: str | None
) -> list[Subject]:
    rx = _id_regex(Path(image_pattern).name)
    images: list[tuple[str, Path]] = []  # an id found twice is reported by Cohort
    for sub in ("", "t1", "images"):
        folder = root / sub
        if not folder.is_dir():
            continue
        for p in sorted(folder.iterdir()):
            m = rx.match(p.name)
            if m and not p.name.startswith("."):  # hidden files (e.g. macOS ._x) are no subjects
                images.append((check_subject_id(m.group("id"), p), p))
    if not images:
        raise CohortError(f"{root}: no images matching {image_pattern!r}")
    subjects = []
    for sid, image in sorted(images):
        labels = _find(root, labels_pattern, sid, ("seg", "labels")) if labels_pattern else None
        mask = _find(root, mask_pattern, sid, ("mask", "masks")) if mask_pattern else None
        subjects.append(Subject(sid, image, labels, mask))
    return subjects


def _from_csv(path: Path) -> list[Subject]:
    base = path.parent
    if path.stat().st_size > MAX_MANIFEST_BYTES:
        raise CohortError(f"{path}: manifest larger than {MAX_MANIFEST_BYTES // 2**20} MiB")
    try:
        # utf-8-sig: a spreadsheet's byte order mark is not part of the first column's name
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            cols = set(reader.fieldnames or ())
            if not {"id", "image"} <= cols:
                raise CohortError(
                    f"{path}: manifest needs columns 'id' and 'image', has {sorted(cols)}"
                )
            rows = list(reader)
    except UnicodeDecodeError:
        raise not_utf8(path, CohortError) from None
    except csv.Error as exc:
        raise CohortError(f"{path}: unreadable CSV manifest ({exc})") from None
    except OSError as exc:
        raise CohortError(f"{path}: unreadable CSV manifest ({exc.strerror or exc})") from None
    if not rows:
        raise CohortError(f"{path}: manifest lists no subjects (a header and no rows)")

    def resolve(value: str | None) -> Path | None:
        if not value:
            return None
        p = Path(value)
        return p if p.is_absolute() else base / p

    subjects = []
    for line, r in enumerate(rows, start=2):
        sid = check_subject_id((r["id"] or "").strip(), f"{path}, line {line}")
        if not r["image"]:
            raise CohortError(f"{path}, line {line}: subject {sid!r} has no image")
        subjects.append(
            Subject(sid, resolve(r["image"]), resolve(r.get("labels")), resolve(r.get("mask")))
        )
    return subjects


def load_cohort(
    path: str | os.PathLike[str],
    image_pattern: str = DEFAULT_IMAGE_PATTERN,
    labels_pattern: str | None = DEFAULT_LABELS_PATTERN,
    mask_pattern: str | None = DEFAULT_MASK_PATTERN,
) -> Cohort:
    """Read a cohort from a folder of ``<id>_T1.nii.gz``/``<id>_seg.nii.gz`` files or a CSV manifest.

    The CSV manifest has columns ``id,image[,labels][,mask]``; relative paths are
    relative to the manifest. Files are not opened here: see :func:`validate_cohort`.
    """
    path = Path(path)
    if not path.exists():
        raise CohortError(f"{path}: cohort not found")
    subjects = (
        _from_csv(path)
        if path.is_file()
        else _from_folder(path, image_pattern, labels_pattern, mask_pattern)
    )
    return Cohort(subjects, path, path.stem)


def _check_grid(sid: str, ref, other, role: str) -> list[CohortIssue]:
    issues = []
    if other.shape != ref.shape:
        issues.append(
            CohortIssue(
                sid,
                str(other.path),
                f"{role} shape {other.shape} does not match image shape {ref.shape}",
            )
        )
    elif not np.allclose(other.affine, ref.affine, atol=1e-3):
        issues.append(
            CohortIssue(sid, str(other.path), f"{role} affine does not match the image affine")
        )
    return issues


def label_problem(labels: np.ndarray) -> str | None:
    """What is wrong with a label map, or ``None``: labels must be integers >= 0.

    The one label rule of every command (``cohort check``, ``train-target``,
    ``reconstruct``, ``match``, studies); :func:`~inversion_audit.io.read_labels`
    already refuses non-integer values.
    """
    labels = np.asarray(labels)
    if not np.issubdtype(labels.dtype, np.integer):
        return f"label map must hold integers, got {labels.dtype}"
    if labels.size and labels.min() < 0:
        return f"negative labels (smallest {int(labels.min())}): labels must be integers >= 0"
    return None


def check_labels(volume: Volume) -> Volume:
    """Return ``volume`` (read with :func:`read_labels`) or raise :class:`VolumeError` naming its file."""
    problem = label_problem(volume.array)
    if problem:
        raise VolumeError(f"{volume.path or '<labels>'}: {problem}")
    return volume


def validate_subject(subject: Subject) -> list[CohortIssue]:
    """Open every file of a subject and report each problem found."""
    issues: list[CohortIssue] = []
    try:
        image = read_volume(subject.image)
    except VolumeError as exc:
        return [
            CohortIssue(subject.id, str(subject.image), str(exc).removeprefix(f"{subject.image}: "))
        ]
    if float(image.array.max()) == float(image.array.min()):
        issues.append(
            CohortIssue(subject.id, str(subject.image), "empty volume: all voxels are equal")
        )
    for role, path, reader in (
        ("labels", subject.labels, read_labels),
        ("mask", subject.mask, read_labels),
    ):
        if path is None:
            continue
        try:
            vol = reader(path)
        except VolumeError as exc:
            issues.append(CohortIssue(subject.id, str(path), str(exc).removeprefix(f"{path}: ")))
            continue
        issues.extend(_check_grid(subject.id, image, vol, role))
        problem = label_problem(vol.array) if role == "labels" else None
        if problem:
            issues.append(CohortIssue(subject.id, str(path), problem))
        elif role == "labels" and vol.array.max() == 0:
            issues.append(CohortIssue(subject.id, str(path), "empty label map: no voxel > 0"))
    return issues


def validate_cohort(
    cohort: Cohort | list[Subject], require_labels: bool = False
) -> list[CohortIssue]:
    """Validate all subjects; return the list of issues (empty when the cohort is valid)."""
    issues: list[CohortIssue] = []
    for subject in cohort:
        if require_labels and subject.labels is None:
            issues.append(CohortIssue(subject.id, "labels", "missing labels file"))
        issues.extend(validate_subject(subject))
    return issues


def require_valid(
    subjects: Cohort | list[Subject], require_labels: bool = False, where: object = "cohort"
) -> None:
    """Open every file of ``subjects`` and raise :class:`CohortError` listing every problem.

    Commands call this before their first write, so that a bad subject late in the
    list cannot leave the outputs of the earlier ones behind.
    """
    issues = validate_cohort(subjects, require_labels=require_labels)
    if issues:
        shown = "; ".join(str(i) for i in issues[:10])
        more = f" (and {len(issues) - 10} more)" if len(issues) > 10 else ""
        raise CohortError(f"{where}: {len(issues)} problem(s), nothing written: {shown}{more}")
