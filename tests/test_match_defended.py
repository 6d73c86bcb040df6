"""``inversion-audit match`` on a defended run's reconstruction folder of a runner-made study:
the run keeps its defence (``defence`` column, run name, rankings) and scores as the study did."""

from __future__ import annotations

import csv
import json

import pytest

from conftest import runner_study_config, write_blob_cohort
from inversion_audit.cli.main import main

BASE = "unet_skull-stripped_bottleneck"
TAG = "latent-noise-0.5"
DEFENDED = f"{BASE}_{TAG}"


def _rows(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.mark.slow
def test_match_on_a_defended_run_folder_keeps_its_defence(tmp_path, capsys):
    from inversion_audit.report import run_and_report
    from inversion_audit.study.config import study_config_from_dict
    from inversion_audit.study.index import StudyIndex
    from inversion_audit.study.layout import StudyPaths

    cohort = write_blob_cohort(tmp_path / "cohort", {f"sub-{k:03d}": k for k in range(4)})
    config = runner_study_config(cohort)  # the session study's tiny settings, then:
    config["folds"]["run_folds"] = [0]
    config["archs"] = ["unet"]
    config["matching"] = {"metrics": ["ssim"], "top_k": 1}
    config["defences"] = [{"kind": "latent-noise", "strengths": [0.5]}]
    study = tmp_path / "study"
    run_and_report(study_config_from_dict(config), study)
    assert DEFENDED in StudyIndex.open(study).runs()

    out = tmp_path / "match"
    code = main(
        [
            "match", "--reconstructions", str(StudyPaths(study).reconstructions_dir(DEFENDED)),
            "--candidates", str(cohort), "--out", str(out), "--metrics", "ssim",
            "--spacing", "2", "--skull-strip", "labels", "--no-bias-correction",
            "--quiet", "--device", "cpu",
        ]
    )  # fmt: skip
    assert code == 0, capsys.readouterr().err
    paths = StudyPaths(out)
    rows = _rows(paths.scores)
    assert {(r["arch"], r["variant"], r["threat_model"], r["defence"]) for r in rows} == {
        ("unet", "skull-stripped", "bottleneck", TAG)
    }
    summary = json.loads(paths.match_summary.read_text())
    assert summary["run"] == DEFENDED and summary["metrics"]["ssim"]["n"] == len(
        {r["reconstruction_id"] for r in rows}
    )
    assert paths.rankings(DEFENDED).is_file()
    index = StudyIndex.open(out)
    assert index.runs() == [DEFENDED] and {e.defence for e in index.entries} == {TAG}
    # the study's own SSIMs of the defended run, to float32 precision
    key = ("reconstruction_id", "candidate_id")
    theirs = {
        tuple(r[k] for k in key): float(r["value"])
        for r in _rows(StudyPaths(study).scores)
        if r["defence"] == TAG and r["metric"] == "ssim"
    }
    mine = {tuple(r[k] for k in key): float(r["value"]) for r in rows}
    assert mine and set(mine) <= set(theirs)
    assert mine == {k: pytest.approx(theirs[k], rel=1e-5) for k in mine}
