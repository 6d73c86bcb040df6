"""``reader-study create`` checks everything before it writes: each kind of refusal leaves the
file system exactly as it was (walked before and after), with an error naming the problem;
a failure while writing removes everything written."""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

import inversion_audit.reader_study.package as package_module
from inversion_audit.cli.main import main
from inversion_audit.io import write_volume
from inversion_audit.reader_study import create_design, write_package
from test_reader_study_design import RUN, build_reader_source_study


@pytest.fixture(scope="session")
def reader_source_study(tmp_path_factory) -> Path:
    return build_reader_source_study(tmp_path_factory)


@pytest.fixture
def study_copy(reader_source_study, tmp_path) -> Path:
    """A private copy of the runner's study, free to change."""
    return Path(shutil.copytree(reader_source_study, tmp_path / "study"))


CANDIDATE = "preprocessed/skull-stripped/IXI103-HH-2003.nii.gz"
RECONSTRUCTION = f"reconstructions/{RUN}/IXI102-HH-2002_recon_pre.nii.gz"


def snapshot(root: Path) -> dict[str, tuple]:
    """Every path under ``root``: kind, permissions and (for files) the content's hash."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            st = p.lstat()
            digest = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else None
            out[str(p.relative_to(root))] = (p.is_dir(), st.st_mode, st.st_size, digest)
    return out


def _argv(study: Path, tmp: Path, **over: str) -> list[str]:
    args = {
        "--study": str(study),
        "--readers": "alice,bob",
        "--candidates": "4",
        "--run": RUN,
        "--quality-only": "1",
        "--out": str(tmp / "pkg"),
        "--key": str(tmp / "key.sqlite"),
        **over,
    }
    return ["reader-study", "create", *[x for kv in args.items() for x in kv]]


def _nonempty_out(study: Path, tmp: Path) -> dict:
    (tmp / "pkg").mkdir()
    (tmp / "pkg" / "notes.txt").write_text("mine")
    return {}


def _out_is_a_file(study: Path, tmp: Path) -> dict:
    (tmp / "pkg").write_text("mine")
    return {}


def _key_exists(study: Path, tmp: Path) -> dict:
    (tmp / "key.sqlite").write_text("an older key")
    return {}


def _key_inside_package(study: Path, tmp: Path) -> dict:
    (tmp / "pkg").mkdir()  # an empty folder is a valid --out; the key may not go into it
    return {"--key": str(tmp / "pkg" / "key.sqlite")}


def _non_utf8_scores(study: Path, tmp: Path) -> dict:
    scores = study / "scores" / "scores.csv"
    scores.write_bytes(scores.read_bytes().replace(b"IXI104", b"IXI\xff\xfe4", 1))
    return {}


def _no_scores(study: Path, tmp: Path) -> dict:
    (study / "scores" / "scores.csv").unlink()
    return {}


def _missing_candidate(study: Path, tmp: Path) -> dict:
    (study / CANDIDATE).unlink()
    return {"--candidates": "6"}  # every subject is a candidate of every case


def _corrupt_reconstruction(study: Path, tmp: Path) -> dict:
    path = study / RECONSTRUCTION
    path.write_bytes(path.read_bytes()[:200])
    return {}


def _other_voxel_size(study: Path, tmp: Path) -> dict:
    write_volume(study / CANDIDATE, np.zeros((32, 32, 32), np.float32), np.diag([3, 3, 3, 1.0]))
    return {"--candidates": "6"}


REFUSALS: dict[str, tuple[Callable[[Path, Path], dict], str]] = {
    "out is a folder that is not empty": (_nonempty_out, "pkg: folder is not empty"),
    "out is a file": (_out_is_a_file, "pkg: exists and is not a folder"),
    "key exists": (_key_exists, "key.sqlite: exists; refusing to overwrite it"),
    "key inside the package": (_key_inside_package, "must not lie inside the reader package"),
    "bad option": (lambda s, t: {"--candidates": "9"}, "n_candidates must be between 2 and 8"),
    "duplicate reader": (lambda s, t: {"--readers": "alice,Alice"}, "duplicate reader"),
    "unknown run": (lambda s, t: {"--run": "nope"}, "scores.csv: no run 'nope'"),
    "too many quality cases": (lambda s, t: {"--quality-only": "9"}, "quality-only cases"),
    "scores.csv missing": (_no_scores, "scores.csv: scores table not found"),
    "scores.csv not UTF-8": (_non_utf8_scores, "scores.csv"),
    "candidate image missing": (_missing_candidate, "IXI103-HH-2003.nii.gz: file not found"),
    "reconstruction corrupt": (_corrupt_reconstruction, "IXI102-HH-2002_recon_pre.nii.gz"),
    "voxel sizes differ in a case": (_other_voxel_size, "do not share one voxel size"),
}


@pytest.mark.parametrize("kind", list(REFUSALS))
def test_each_refusal_leaves_the_file_system_as_it_was(kind, study_copy, tmp_path, capsys):
    prepare, message = REFUSALS[kind]
    over = prepare(study_copy, tmp_path)
    before = snapshot(tmp_path)
    assert main(_argv(study_copy, tmp_path, **over)) == 1
    err = capsys.readouterr().err
    assert err.startswith("inversion-audit: error:") and message in err, err
    assert "Traceback" not in err
    assert snapshot(tmp_path) == before


def test_an_empty_out_folder_is_used_and_stays_empty_on_a_refusal(study_copy, tmp_path, capsys):
    (tmp_path / "pkg").mkdir()
    before = snapshot(tmp_path)
    assert main(_argv(study_copy, tmp_path, **{"--candidates": "9"})) == 1
    assert snapshot(tmp_path) == before
    assert main(_argv(study_copy, tmp_path)) == 0, capsys.readouterr().err
    assert (tmp_path / "pkg" / "reader-study.sqlite").is_file()
    assert (tmp_path / "key.sqlite").is_file()
    out = capsys.readouterr().out
    assert "7 cases (6 match, 1 quality-only)" in out and "keep it from readers" in out


@pytest.mark.parametrize("stage", ["images", "key"])
def test_a_failure_while_writing_removes_everything_written(
    stage, study_copy, tmp_path, monkeypatch
):
    design = create_design(study_copy, ["alice"], n_candidates=3, run=RUN)
    calls = []

    def failing(*args, **kwargs):
        calls.append(args)
        if len(calls) == 3 or stage == "key":
            raise OSError("disk full")
        return real(*args, **kwargs)

    name = "write_case_images" if stage == "images" else "fill_key"
    real = getattr(package_module, name)
    monkeypatch.setattr(package_module, name, failing)
    out, key = tmp_path / "new" / "deeper" / "pkg", tmp_path / "keys" / "key.sqlite"
    before = snapshot(tmp_path)
    with pytest.raises(OSError, match="disk full"):
        write_package(out, key, design)
    assert calls
    # no package, no key, no hidden temporary folder, no parent folders made for them
    assert snapshot(tmp_path) == before
