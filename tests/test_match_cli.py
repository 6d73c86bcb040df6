"""``inversion-audit match`` on a tiny cohort with stand-in reconstructions (blurred, noisy originals)."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from inversion_audit.cli.main import main
from inversion_audit.data import PreprocessConfig, load_cohort, preprocess_subject
from inversion_audit.io import read_volume, write_volume

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
    assert set(metrics) == {"ssim", "correlation", "deformation", "fused(ssim+deformation)"}
    # stand-ins are easy: SSIM finds every true original
    assert (
        metrics["ssim"]["top1"] == 3
        and metrics["ssim"]["own_mean"] > metrics["ssim"]["others_mean"]
    )
    assert any("SSIM top-2" in n and "not computed" in n for n in metrics["deformation"]["notes"])
    # deformation computed on exactly the top-2 pairs per reconstruction
    deform = _rows(out / "scores_deformation.csv")
    assert [sum(v != "" for k, v in r.items() if k != "reconstruction_id") for r in deform] == [
        2,
        2,
        2,
    ]
    ranks = {(r["reconstruction_id"], r["metric"]): r for r in _rows(out / "rankings.csv")}
    assert ranks[("sub02", "ssim")]["top1_candidate"] == "sub02"
    assert ranks[("sub02", "deformation")]["rank_of_true_match"] in {"1", "2"}
    maps = sorted(p.name for p in (out / "deformation").iterdir())
    assert len(maps) == 3 and all(p.endswith("_magnitude.nii.gz") for p in maps)
    mag = read_volume(out / "deformation" / maps[0])
    assert mag.shape == (32, 32, 32) and mag.array.min() >= 0
    long = _rows(out / "scores.csv")
    assert {r["metric"] for r in long} >= {"ssim", "correlation", "deformation"}
    assert sum(r["metric"] == "ssim" for r in long) == 3 * 6


def test_match_source_grid_reconstructions(tiny_cohort, tmp_path, capsys):
    recon_dir = tmp_path / "recon"
    _stand_ins(tiny_cohort, recon_dir, ["sub01", "sub03"], grid="source")
    out = tmp_path / "match"
    code = main(
        [
            "match", "--reconstructions", str(recon_dir), "--candidates", str(tiny_cohort), "--out", str(out),
            "--metrics", "ssim,correlation,psnr", "--shape", "32", "32", "32", "--quiet", "--device", "cpu",
            "--mask", "candidate",
        ]
    )  # fmt: skip
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["reconstruction_pattern"] == "{id}_recon.nii.gz"
    for metric in ("ssim", "correlation", "psnr"):
        assert summary["metrics"][metric]["top1"] == 2
    ssim = _rows(out / "scores_ssim.csv")
    assert [r["reconstruction_id"] for r in ssim] == ["sub01", "sub03"] and len(ssim[0]) == 7
    assert "| ssim | 2 |" in capsys.readouterr().out


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
