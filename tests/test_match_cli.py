"""``inversion-audit match`` on a tiny cohort with stand-in reconstructions (blurred, noisy originals)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from inversion_audit.cli.main import main
from inversion_audit.data import PreprocessConfig, load_cohort, preprocess_subject
from inversion_audit.io import read_volume, write_volume
from inversion_audit.study.layout import SCORE_COLUMNS, StudyPaths

CONFIG = PreprocessConfig(spacing=(2.0, 2.0, 2.0), shape=(32, 32, 32))


def _stand_ins(cohort_dir, out_dir, ids, grid="preprocessed", seed=0):
    """Write blurred + noisy preprocessed originals as reconstructions."""
    rng = np.random.default_rng(seed)
    cohort = load_cohort(cohort_dir)
    for sid in ids:
        pre = preprocess_subject(cohort[sid], CONFIG)
        rec = np.clip(
            gaussian_filter(pre.image, 1.0) + rng.normal(0, 0.05, pre.shape), 0, 1
        ).astype(np.float32)
        if grid == "preprocessed":
            write_volume(out_dir / f"{sid}_recon_pre.nii.gz", rec, pre.affine)
        else:
            write_volume(out_dir / f"{sid}_recon.nii.gz", pre.to_source(rec))


def _rows(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


RUN = "unknown_with-skull_unknown"  # no run name given: what match calls its run
DEMO = Path(__file__).resolve().parents[1] / "sample_data" / "demo_study"


def _scores(out):
    return _rows(StudyPaths(out).scores)


@pytest.mark.slow
def test_match_all_metrics_top_k_on_a_scheduler(tiny_cohort, tmp_path):
    from distributed import LocalCluster

    recon_dir = tmp_path / "recon"
    ids = ["sub00", "sub02", "sub04"]
    _stand_ins(tiny_cohort, recon_dir, ids)
    out = tmp_path / "match"
    with LocalCluster(
        n_workers=1, threads_per_worker=1, processes=False, dashboard_address=":0"
    ) as cluster:
        code = main(
            [
                "match", "--reconstructions", str(recon_dir), "--candidates", str(tiny_cohort), "--out", str(out),
                "--metrics", "ssim,correlation,deformation", "--top-k", "2", "--preset", "fast",
                "--scheduler", cluster.scheduler_address, "--quiet", "--device", "cpu",
            ]
        )  # fmt: skip
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["top_k"] == 2 and summary["preprocess"]["shape"] == [32, 32, 32]
    metrics = summary["metrics"]
    assert set(metrics) == {"ssim", "correlation", "deformation", "fused"}
    # stand-ins are easy: SSIM finds every true original
    assert (
        metrics["ssim"]["top1"] == 3
        and metrics["ssim"]["own_mean"] > metrics["ssim"]["others_mean"]
    )
    long = _scores(out)
    assert list(long[0]) == list(SCORE_COLUMNS)
    assert {(r["arch"], r["variant"], r["threat_model"], r["fold"]) for r in long} == {
        ("unknown", "with-skull", "unknown", "")
    }
    # deformation computed on exactly each reconstruction's SSIM top-2 pairs
    ssim = {
        (r["reconstruction_id"], r["candidate_id"]): float(r["value"])
        for r in long
        if r["metric"] == "ssim"
    }
    deform = {
        (r["reconstruction_id"], r["candidate_id"]) for r in long if r["metric"] == "deformation"
    }
    top2 = {
        (rid, cid)
        for rid in ids
        for cid in sorted((c for r, c in ssim if r == rid), key=lambda c: -ssim[(rid, c)])[:2]
    }
    assert deform == top2
    assert sum(r["metric"] == "ssim" for r in long) == 3 * 6
    ranks = {(r["reconstruction_id"], r["metric"]): r for r in _rows(StudyPaths(out).rankings(RUN))}
    assert ranks[("sub02", "ssim")]["top1_candidate"] == "sub02"
    assert ranks[("sub02", "deformation")]["rank_of_true_match"] in {"1.0", "2.0"}
    assert ("sub02", "fused") in ranks
    maps = sorted(StudyPaths(out).deformation_dir(RUN).iterdir())
    assert {tuple(p.name[: -len("_magnitude.nii.gz")].split("__")) for p in maps} == top2
    mag = read_volume(maps[0])
    assert mag.shape == (32, 32, 32) and mag.array.min() >= 0


@pytest.mark.slow
def test_match_deformation_does_not_depend_on_threads(tiny_cohort, tmp_path, monkeypatch):
    """One ITK thread and a fixed seed per registration: --threads 2 and 3 (that many child
    processes at once) give the same displacements, each computed afresh (separate caches)."""
    recon_dir = tmp_path / "recon"
    _stand_ins(tiny_cohort, recon_dir, ["sub01", "sub03"])
    values = []
    for threads in ("2", "3"):
        monkeypatch.setenv("INVERSION_AUDIT_CACHE", str(tmp_path / f"cache{threads}"))
        out = tmp_path / f"match{threads}"
        code = main(
            [
                "match", "--reconstructions", str(recon_dir), "--candidates", str(tiny_cohort),
                "--out", str(out), "--metrics", "ssim,deformation", "--top-k", "2", "--preset", "fast",
                "--threads", threads, "--quiet", "--device", "cpu",
            ]
        )  # fmt: skip
        assert code == 0
        values.append(
            {
                (r["reconstruction_id"], r["candidate_id"]): r["value"]
                for r in _scores(out)
                if r["metric"] == "deformation"
            }
        )
    assert len(values[0]) == 4 and values[0] == values[1]


def test_match_source_grid_reconstructions(tiny_cohort, tmp_path, capsys):
    recon_dir = tmp_path / "recon"
    _stand_ins(tiny_cohort, recon_dir, ["sub01", "sub03"], grid="source")
    out = tmp_path / "match"
    code = main(
        [
            "match", "--reconstructions", str(recon_dir), "--candidates", str(tiny_cohort), "--out", str(out),
            "--metrics", "ssim,correlation,psnr,ssim_brain", "--shape", "32", "32", "32", "--quiet",
            "--device", "cpu", "--arch", "unet", "--threat-model", "bottleneck", "--fold", "3",
        ]
    )  # fmt: skip
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["reconstruction_pattern"] == "{id}_recon.nii.gz"
    for metric in ("ssim", "correlation", "psnr"):
        assert summary["metrics"][metric]["top1"] == 2
    long = _scores(out)
    assert {r["fold"] for r in long} == {"3"}
    assert sorted({r["reconstruction_id"] for r in long}) == ["sub01", "sub03"]
    assert sum(r["metric"] == "ssim_brain" for r in long) == 2 * 6
    paths = StudyPaths(out)
    assert paths.reconstruction("unet_with-skull_bottleneck", "sub01", "preprocessed").is_file()
    assert "| ssim | 2 |" in capsys.readouterr().out


@pytest.mark.slow
def test_match_scores_the_demo_study_as_the_study_did(tmp_path, capsys):
    """The demo study's own reconstructions, against the sample cohort it used: the grid comes
    from the reconstructions (the demo's preprocessing has no divisible_by), the scores equal
    the study's, and the output opens as a study and in ``reader-study create``."""
    from inversion_audit.study.index import StudyIndex

    run = "unet_skull-stripped_bottleneck"
    key = ("arch", "variant", "threat_model", "reconstruction_id", "candidate_id", "metric")
    rows = [r for r in _rows(DEMO / "scores" / "scores.csv") if r["arch"] == "unet"]
    study = {tuple(r[k] for k in key): float(r["value"]) for r in rows}
    # the study's gallery (members and the non-member holdout): the first N sample subjects
    n_rec, n_cand = (len({r[k] for r in rows}) for k in ("reconstruction_id", "candidate_id"))
    out = tmp_path / "M"
    code = main(
        [
            "match", "--reconstructions", str(DEMO / "reconstructions" / run), "--candidates", f"sample:{n_cand}",
            "--out", str(out), "--spacing", "3", "--skull-strip", "labels", "--no-bias-correction",
            "--metrics", "ssim,correlation,psnr,ssim_brain", "--quiet", "--device", "cpu",
        ]
    )  # fmt: skip
    assert code == 0, capsys.readouterr().err
    mine = {tuple(r[k] for k in key): float(r["value"]) for r in _scores(out)}
    assert len(mine) == n_rec * n_cand * 4 and set(mine) <= set(study)
    # the study's values to float32 precision (SSIM sums in float32: the last of 6 digits
    # may differ with the thread count)
    assert {k: pytest.approx(v, rel=1e-5) for k, v in mine.items()} == {k: study[k] for k in mine}
    index = StudyIndex.open(out)
    assert index.runs() == [run] and len(index.entries) == n_rec
    entry = index.entries[0]
    assert index.candidate_file(entry.variant, entry.reconstruction_id).is_file()
    assert index.reconstruction_file(entry).is_file()
    package, key = tmp_path / "package", tmp_path / "readers.key"
    code = main(
        [
            "reader-study", "create", "--study", str(out), "--readers", "alice", "--candidates", "3",
            "--out", str(package), "--key", str(key),
        ]
    )  # fmt: skip
    assert code == 0, capsys.readouterr().err
    assert key.is_file() and any(package.iterdir())


def test_match_errors_name_the_file(tiny_cohort, tmp_path, capsys):
    recon_dir = tmp_path / "recon"
    recon_dir.mkdir()
    args = [
        "match",
        "--reconstructions",
        str(recon_dir),
        "--candidates",
        str(tiny_cohort),
        "--out",
        str(tmp_path / "o"),
    ]
    assert main([*args, "--quiet"]) == 1
    assert "no reconstruction files" in capsys.readouterr().err
    # a source-grid reconstruction of a subject that is not a candidate
    write_volume(recon_dir / "stranger_recon.nii.gz", np.zeros((32, 32, 32), np.float32), np.eye(4))
    assert main([*args, "--shape", "32", "32", "32", "--metrics", "ssim", "--quiet"]) == 1
    assert "stranger_recon.nii.gz" in capsys.readouterr().err
    # a preprocessed-grid reconstruction preprocessed differently (other spacing)
    (recon_dir / "stranger_recon.nii.gz").unlink()
    write_volume(
        recon_dir / "sub00_recon_pre.nii.gz",
        np.zeros((32, 32, 32), np.float32),
        np.diag([3, 3, 3, 1.0]),
    )
    assert main([*args, "--spacing", "2", "--metrics", "ssim", "--quiet"]) == 1
    assert "sub00_recon_pre.nii.gz: grid differs" in capsys.readouterr().err
    assert main([*args, "--metrics", "ssim,bogus", "--quiet"]) == 1
    assert "bogus" in capsys.readouterr().err


@pytest.mark.slow
def test_match_greedy_measures_a_known_shift_in_mm(tiny_cohort, tmp_path, capsys):
    """``--registration greedy``: a reconstruction that is its original shifted by 2 voxels
    of 2 mm scores a mean displacement of about 4 mm against it (the shift applied is the
    reference), its magnitude map is stored, and greedy with the ANTs-only preset is refused
    before anything is written."""
    from scipy import ndimage

    recon_dir = tmp_path / "recon"
    recon_dir.mkdir()
    pre = preprocess_subject(load_cohort(tiny_cohort)["sub01"], CONFIG)
    shifted = ndimage.shift(pre.image, (2, 0, 0), order=1).astype(np.float32)
    write_volume(recon_dir / "sub01_recon_pre.nii.gz", shifted, pre.affine)
    args = [
        "match", "--reconstructions", str(recon_dir), "--candidates", str(tiny_cohort),
        "--metrics", "ssim,deformation", "--registration", "greedy", "--quiet", "--device", "cpu",
    ]  # fmt: skip
    refused = tmp_path / "refused"
    assert main([*args, "--out", str(refused), "--preset", "paper"]) == 1
    assert "paper" in capsys.readouterr().err and not refused.exists()

    out = tmp_path / "match"
    assert main([*args, "--out", str(out)]) == 0
    deformation = {
        r["candidate_id"]: float(r["value"]) for r in _scores(out) if r["metric"] == "deformation"
    }
    assert deformation["sub01"] == pytest.approx(4.0, rel=0.2)
    magnitude = read_volume(StudyPaths(out).deformation(RUN, "sub01", "sub01"))
    assert magnitude.array.shape == pre.shape and 3.0 < magnitude.array.max() < 12.0
    summary = json.loads(StudyPaths(out).match_summary.read_text())
    assert summary["registration"] == "greedy" and summary["deformation_preset"] == "fast"
