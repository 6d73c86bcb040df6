"""``inversion-audit run`` reads and checks every input before it writes: a refusal leaves
``--out`` and the cache exactly as they were (absent, or unchanged when resuming)."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import tomli_w

from conftest import RUNNER_STUDY_IDS, runner_study_config, write_blob_cohort
from inversion_audit.cli.main import main


def snapshot(*roots: Path) -> dict[str, tuple[int, str]]:
    """Every file under ``roots``: relative path -> (size, sha256); folders as entries too."""
    seen: dict[str, tuple[int, str]] = {}
    for root in roots:
        if not root.exists():
            continue
        for dirpath, dirnames, filenames in os.walk(root):
            for d in dirnames:
                seen[str(Path(dirpath, d))] = (-1, "")
            for f in filenames:
                p = Path(dirpath, f)
                seen[str(p)] = (p.stat().st_size, hashlib.sha256(p.read_bytes()).hexdigest())
    return seen


def _cohort(tmp_path: Path) -> Path:
    return write_blob_cohort(
        tmp_path / "cohort", {sid: k for k, sid in enumerate(RUNNER_STUDY_IDS)}
    )


def _config(tmp_path: Path, data: dict, name: str = "study.toml") -> Path:
    path = tmp_path / name
    path.write_bytes(tomli_w.dumps(data).encode())
    return path


def _refused(config: Path, out: Path, capsys, *expected: str) -> str:
    """Run the CLI, assert a non-zero exit naming ``expected`` and nothing written."""
    cache = Path(os.environ["INVERSION_AUDIT_CACHE"])
    before = snapshot(out, cache)
    existed = out.exists()
    code = main(["run", str(config), "--out", str(out), "--quiet"])
    err = capsys.readouterr().err
    assert code != 0
    for text in expected:
        assert text in err, err
    assert "Traceback" not in err
    assert out.exists() == existed
    assert snapshot(out, cache) == before
    return err


def _later_subject(cohort: Path, suffix: str) -> Path:
    return cohort / f"{RUNNER_STUDY_IDS[-1]}{suffix}"


def test_an_empty_config_exits_at_once_and_writes_nothing(tmp_path, capsys):
    empty = tmp_path / "empty.toml"
    empty.write_text("")
    _refused(empty, tmp_path / "out", capsys, "empty.toml", "[cohort] path")


def test_a_config_without_a_cohort_writes_nothing(tmp_path, capsys):
    data = runner_study_config(tmp_path)
    del data["cohort"]
    _refused(_config(tmp_path, data), tmp_path / "out", capsys, "names no cohort")


def test_a_missing_cohort_folder_writes_nothing(tmp_path, capsys):
    data = runner_study_config(tmp_path / "no-such-cohort")
    _refused(_config(tmp_path, data), tmp_path / "out", capsys, "cohort.path", "no-such-cohort")


def test_an_empty_run_list_writes_nothing(tmp_path, capsys):
    data = {**runner_study_config(_cohort(tmp_path)), "variants": []}
    _refused(_config(tmp_path, data), tmp_path / "out", capsys, "variants is empty")


def test_a_bad_image_late_in_the_cohort_writes_nothing(tmp_path, capsys):
    cohort = _cohort(tmp_path)
    _later_subject(cohort, "_T1.nii.gz").write_bytes(b"not a nifti file at all")
    data = runner_study_config(cohort)
    del data["preprocess"]["shape"]  # the common grid would preprocess (and cache) subjects
    _refused(_config(tmp_path, data), tmp_path / "out", capsys, f"{RUNNER_STUDY_IDS[-1]}_T1")


def test_a_label_file_off_the_image_grid_writes_nothing(tmp_path, capsys):
    cohort = _cohort(tmp_path)
    labels = _later_subject(cohort, "_seg.nii.gz")
    nib.save(nib.Nifti1Image(np.ones((16, 16, 16), np.uint8), np.eye(4)), labels)
    _refused(
        _config(tmp_path, runner_study_config(cohort)),
        tmp_path / "out",
        capsys,
        f"{RUNNER_STUDY_IDS[-1]}_seg",
    )


def test_more_folds_than_subjects_writes_nothing(tmp_path, capsys):
    data = runner_study_config(_cohort(tmp_path))
    data["folds"]["n_folds"] = len(RUNNER_STUDY_IDS) + 1
    _refused(_config(tmp_path, data), tmp_path / "out", capsys, "folds.n_folds")


def test_a_model_table_whose_weights_are_missing_writes_nothing(tmp_path, capsys):
    data = runner_study_config(_cohort(tmp_path))
    data["model"] = {
        "source": "monai",
        "path": str(tmp_path / "missing.safetensors"),
        "network": "BasicUNet",
        "network_args": {"spatial_dims": 3, "in_channels": 1, "out_channels": 2},
        "members": list(RUNNER_STUDY_IDS[:2]),
    }
    _refused(_config(tmp_path, data), tmp_path / "out", capsys, "model.path", "missing")


def test_a_model_member_outside_the_cohort_writes_nothing(tmp_path, capsys):
    from monai.networks.nets import BasicUNet
    from safetensors.torch import save_file

    net_args = {"spatial_dims": 3, "in_channels": 1, "out_channels": 2, "features": [2] * 6}
    weights = tmp_path / "model.safetensors"
    save_file({k: v.contiguous() for k, v in BasicUNet(**net_args).state_dict().items()}, weights)
    data = runner_study_config(_cohort(tmp_path))
    data["model"] = {
        "source": "monai",
        "path": str(weights),
        "network": "BasicUNet",
        "network_args": net_args,
        "members": [RUNNER_STUDY_IDS[0], "sub-999"],
    }
    _refused(_config(tmp_path, data), tmp_path / "out", capsys, "sub-999")


def test_a_refused_resume_leaves_the_study_unchanged(runner_study, tmp_path, capsys):
    study = tmp_path / "study"
    shutil.copytree(runner_study, study)
    cohort = tmp_path / "cohort"
    shutil.copytree(runner_study.parent / "cohort", cohort)
    _later_subject(cohort, "_T1.nii.gz").write_bytes(b"\x00" * 64)
    _refused(
        _config(tmp_path, runner_study_config(cohort)),
        study,
        capsys,
        f"{RUNNER_STUDY_IDS[-1]}_T1",
    )


def test_plan_writes_nothing_either(tmp_path, capsys):
    data = runner_study_config(_cohort(tmp_path))
    del data["preprocess"]["shape"]
    config = _config(tmp_path, data)
    cache = Path(os.environ["INVERSION_AUDIT_CACHE"])
    before = snapshot(cache)
    out = tmp_path / "out"
    assert main(["run", str(config), "--out", str(out), "--plan"]) == 0
    assert "to run" in capsys.readouterr().out
    assert not out.exists()
    assert snapshot(cache) == before


def test_a_valid_run_caches_what_checking_computed(tmp_path):
    """The preprocessing computed while checking (the common grid) is cached once the run starts."""
    data = runner_study_config(_cohort(tmp_path))
    del data["preprocess"]["shape"]
    data["archs"] = ["unet"]
    data["folds"]["run_folds"] = [0]
    data["matching"]["metrics"] = ["ssim"]
    cache = Path(os.environ["INVERSION_AUDIT_CACHE"])
    assert (
        main(["run", str(_config(tmp_path, data)), "--out", str(tmp_path / "out"), "--quiet"]) == 0
    )
    assert len(list((cache / "preprocessed").glob("*.npz"))) >= 2 * len(RUNNER_STUDY_IDS)


@pytest.mark.parametrize("plan", [False, True], ids=["run", "plan"])
def test_a_hostile_nnunet_folder_runs_no_code_and_writes_nothing(tmp_path, capsys, plan):
    """``network_class_name`` as an attribute path to ``torch.hub.load`` with a planted
    ``hubconf.py``: refused from the table before any write, in ``run`` and ``run --plan``."""
    from test_hostile_models import THROUGH, hostile_nnunet

    def edit(arch, hub):
        arch["network_class_name"] = THROUGH[0]
        arch["arch_kwargs"] = {**arch["arch_kwargs"], **hub}

    root, marker = hostile_nnunet(tmp_path, edit)
    data = runner_study_config(_cohort(tmp_path))
    data["model"] = {
        "source": "nnunet",
        "path": str(root),
        "fold": 0,
        "members": list(RUNNER_STUDY_IDS[:2]),
    }
    config, out = _config(tmp_path, data), tmp_path / "out"
    if plan:
        code = main(["run", str(config), "--out", str(out), "--plan"])
        err = capsys.readouterr().err
        assert code != 0 and "network_class_name" in err and not out.exists()
    else:
        _refused(config, out, capsys, "plans.json", "network_class_name")
    assert not marker.exists()
