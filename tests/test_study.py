"""The end-to-end study: layout, report numbers, interrupt-and-resume."""

from __future__ import annotations

import csv
import re

import numpy as np
import pytest

from inversion_audit.errors import JobCancelled
from inversion_audit.study.config import study_config_from_dict
from inversion_audit.study.report import load_scores, summarize_study
from inversion_audit.study.runner import run_study

pytestmark = pytest.mark.slow


def tiny_config(cohort_path, **matching) -> dict:
    return {
        "study": {"name": "tiny", "seed": 1, "device": "cpu", "threads": 1},
        "cohort": {"path": str(cohort_path)},
        "folds": {"n_folds": 2, "seed": 0},
        "variants": ["skull-stripped"],
        "archs": ["unet", "segnet"],
        "threat_models": ["bottleneck"],
        "preprocess": {"spacing": [2.0, 2.0, 2.0], "shape": [32, 32, 32], "divisible_by": 8},
        "target": {"depth": 2, "base_filters": 4, "epochs": 3, "batch_size": 1, "lr": 0.01},
        "inversion": {"epochs": 4, "batch_size": 1, "lr": 0.01},
        "matching": {"top_k": 1, "deformation_preset": "fast", **matching},
    }


def _read_csv(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_tiny_study_writes_every_file(tiny_cohort, tmp_path):
    out = tmp_path / "study"
    run_study(study_config_from_dict(tiny_config(tiny_cohort)), out)
    for rel in (
        "config.toml",
        "provenance.json",
        "study.log",
        "report.html",
        "report.md",
        "report.json",
        "scores/scores.csv",
    ):
        assert (out / rel).is_file(), rel
    ids = [f"sub{i:02d}" for i in range(6)]
    for arch in ("unet", "segnet"):
        run = f"{arch}_skull-stripped_bottleneck"
        for fold in (0, 1):
            for name in ("target.safetensors", "target.json"):
                assert (
                    out / "checkpoints" / f"{arch}_skull-stripped" / f"fold{fold}" / name
                ).is_file()
            for name in ("inversion.safetensors", "inversion.json"):
                assert (out / "checkpoints" / run / f"fold{fold}" / name).is_file()
        for sid in ids:
            assert (out / "reconstructions" / run / f"{sid}_recon.nii.gz").is_file()
            assert (out / "reconstructions" / run / f"{sid}_recon_pre.nii.gz").is_file()
        assert (out / "rankings" / f"{run}.csv").is_file()
        assert (
            len(list((out / "deformation" / run).glob("*_magnitude.nii.gz"))) == 6
        )  # top-1 per reconstruction
    for sid in ids:
        assert (out / "preprocessed" / "skull-stripped" / f"{sid}.nii.gz").is_file()
        assert (out / "preprocessed" / "skull-stripped" / f"{sid}_seg.nii.gz").is_file()
    rows = _read_csv(out / "scores" / "scores.csv")
    assert set(rows[0]) == {
        "fold",
        "arch",
        "variant",
        "threat_model",
        "reconstruction_id",
        "candidate_id",
        "metric",
        "value",
    }
    metrics = {r["metric"] for r in rows}
    assert {
        "ssim",
        "correlation",
        "psnr",
        "deformation",
        "dice_reconstruction",
        "dice_original",
    } <= metrics
    # every reconstruction is scored against every candidate of the cohort
    ssim_rows = [r for r in rows if r["metric"] == "ssim" and r["arch"] == "unet"]
    assert len(ssim_rows) == 36
    import json

    prov = json.loads((out / "provenance.json").read_text())
    assert prov["versions"]["torch"] and prov["seeds"]["study"] == 1 and prov["finished"]
    assert prov["inputs"]["files"]["sub00"]["image"] and prov["stage_seconds"]
    html = (out / "report.html").read_text()
    assert "data:image/png;base64," in html and "Table 3" in html


def _md_table(md: str, heading: str) -> list[list[str]]:
    block = md.split(heading, 1)[1].split("\n## ", 1)[0]
    lines = [ln for ln in block.splitlines() if ln.startswith("|")]
    return [[c.strip() for c in ln.strip("|").split("|")] for ln in lines[2:]]


def test_report_tables_parse_back_to_scores(tiny_cohort, tmp_path):
    out = tmp_path / "study"
    run_study(
        study_config_from_dict(tiny_config(tiny_cohort, metrics=["ssim", "correlation", "psnr"])),
        out,
    )
    rows = load_scores(out / "scores" / "scores.csv")
    md = (out / "report.md").read_text()
    table1 = _md_table(md, "## Table 1")
    for row in table1:
        arch = row[0].split("_")[0]
        own = [
            r["value"]
            for r in rows
            if r["arch"] == arch
            and r["metric"] == "ssim"
            and r["reconstruction_id"] == r["candidate_id"]
        ]
        mean, sd = (float(x) for x in re.findall(r"-?\d+\.\d+", row[3])[:2])
        assert mean == pytest.approx(np.mean(own), abs=6e-4)
        assert sd == pytest.approx(np.std(own, ddof=1), abs=6e-4)
    table3 = _md_table(md, "## Table 3")
    for row in table3:
        arch, metric, top1 = row[0].split("_")[0], row[1], int(row[2])
        sel = [r for r in rows if r["arch"] == arch and r["metric"] == metric]
        by_rec: dict[str, list] = {}
        for r in sel:
            by_rec.setdefault(r["reconstruction_id"], []).append(r)
        sign = 1 if metric != "deformation" else -1
        expected = sum(
            max(v, key=lambda r: sign * r["value"])["candidate_id"] == k for k, v in by_rec.items()
        )
        assert top1 == expected
    summary = summarize_study(rows)
    assert set(summary["runs"]) == {
        "unet_skull-stripped_bottleneck",
        "segnet_skull-stripped_bottleneck",
    }


def test_interrupt_and_resume_gives_identical_results(tiny_cohort, tmp_path):
    cfg = study_config_from_dict(tiny_config(tiny_cohort, metrics=["ssim", "correlation"]))
    cfg = type(cfg)(**{**cfg.__dict__, "archs": ["unet"]})
    seen = []

    def stop_in_second_fold(done, total, stage):
        seen.append(stage)
        if stage.startswith("fold 1"):
            raise JobCancelled("interrupted by the test")

    out = tmp_path / "interrupted"
    with pytest.raises(JobCancelled):
        run_study(cfg, out, progress=stop_in_second_fold)
    assert any(s.startswith("fold 0") for s in seen)
    assert not (out / "scores" / "scores.csv").exists()
    done_before = {p.name for p in (out / "stages").iterdir()}
    assert any("fold0" in n and "score" in n for n in done_before)
    resumed = []
    run_study(cfg, out, progress=lambda d, t, s: resumed.append(s))
    assert not any(s.startswith("fold 0") for s in resumed)  # fold 0 was not redone
    fresh = tmp_path / "fresh"
    run_study(cfg, fresh)
    assert (out / "scores" / "scores.csv").read_text() == (
        fresh / "scores" / "scores.csv"
    ).read_text()
    # a changed matching setting re-runs only the scoring stages
    changed = type(cfg)(
        **{**cfg.__dict__, "matching": type(cfg.matching)(metrics=["ssim"], top_k=1)}
    )
    again = []
    run_study(changed, out, progress=lambda d, t, s: again.append(s))
    assert again and not any("train" in s or "reconstruct" in s for s in again)
