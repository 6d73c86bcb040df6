"""The non-member control: holdout config keys, resolution, fold assignment, guard, report section."""

from __future__ import annotations

import numpy as np
import pytest

from inversion_audit.data import Fold, load_cohort
from inversion_audit.errors import CohortError, ConfigError
from inversion_audit.report.membership import (
    membership_markdown,
    membership_plain,
    membership_summary,
)
from inversion_audit.study.config import study_config_from_dict
from inversion_audit.study.holdout import (
    assign_holdout,
    check_holdout_unused,
    gallery,
    resolve_holdout,
)
from roc_reference import sklearn_verification


def _cfg(tiny_cohort, **cohort):
    return study_config_from_dict({"cohort": {"path": str(tiny_cohort), **cohort}})


def test_holdout_keys_are_checked(tiny_cohort):
    assert _cfg(tiny_cohort, holdout=["sub05"]).cohort.holdout == ["sub05"]
    with pytest.raises(ConfigError, match="give one of holdout, holdout_n"):
        _cfg(tiny_cohort, holdout=["sub05"], holdout_n=2)
    with pytest.raises(ConfigError, match="cohort.holdout_n must be in 1"):
        _cfg(tiny_cohort, holdout_n=0)
    with pytest.raises(ConfigError, match="'sub01' is also in cohort.subjects"):
        _cfg(tiny_cohort, subjects=["sub00", "sub01"], holdout=["sub01"])
    with pytest.raises(ConfigError, match="distinct"):
        _cfg(tiny_cohort, holdout=["sub05", "sub05"])


def test_resolve_holdout_ids_count_and_folder(tiny_cohort, tmp_path):
    full = load_cohort(tiny_cohort)
    protocol = full.subset(["sub00", "sub01", "sub02", "sub03"])
    cfg = _cfg(tiny_cohort, n_subjects=4, holdout_n=2)
    assert resolve_holdout(cfg, full, protocol).ids == ["sub04", "sub05"]
    assert resolve_holdout(_cfg(tiny_cohort, holdout=["sub05"]), full, protocol).ids == ["sub05"]
    assert resolve_holdout(_cfg(tiny_cohort), full, protocol) is None
    with pytest.raises(ConfigError, match="'sub02' is a protocol subject"):
        resolve_holdout(_cfg(tiny_cohort, holdout=["sub02"]), full, protocol)
    with pytest.raises(ConfigError, match="holdout_n = 3 but only 2"):
        resolve_holdout(_cfg(tiny_cohort, holdout_n=3), full, protocol)
    # a folder holdout whose ids clash with the protocol's is refused
    with pytest.raises(ConfigError, match="holdout_path: subject 'sub00'"):
        resolve_holdout(_cfg(tiny_cohort, holdout_path=str(tiny_cohort)), full, protocol)
    both = gallery(protocol, full.subset(["sub04"]))
    assert both.ids == ["sub00", "sub01", "sub02", "sub03", "sub04"]
    with pytest.raises(CohortError, match="duplicate subject ids"):
        gallery(protocol, full.subset(["sub00"]))


def test_assign_and_guard():
    folds = [Fold(0, ("a",), ("b", "c")), Fold(1, ("b",), ("a", "c")), Fold(2, ("c",), ("a", "b"))]
    assert assign_holdout(["h3", "h1", "h2", "h4"], folds) == {
        0: ["h1", "h4"],
        1: ["h2"],
        2: ["h3"],
    }
    assert assign_holdout(["h1", "h2"], folds[1:]) == {1: ["h1"], 2: ["h2"]}
    check_holdout_unused(["h1"], {"fold 0 private set": ["a"], "fold 0 attack set": ["b", "c"]})
    with pytest.raises(CohortError, match="holdout subject 'b' is in the fold 0 attack set"):
        check_holdout_unused(["b"], {"fold 0 private set": ["a"], "fold 0 attack set": ["b", "c"]})


def _rows(found_members: int, found_nonmembers: int, n_m: int = 6, n_n: int = 3):
    """scores.csv rows of one run where the first found_* of each group rank their own first."""
    ids = [f"m{i}" for i in range(n_m)] + [f"h{i}" for i in range(n_n)]
    r = np.random.default_rng(0)
    rows = []
    for a, rid in enumerate(ids):
        found = a < found_members if a < n_m else a - n_m < found_nonmembers
        for cid in ids:
            own = rid == cid
            v = (0.9 if found else 0.1) if own else r.uniform(0.2, 0.5)
            base = {"fold": 0, "arch": "unet", "variant": "skull-stripped"}
            base |= {"threat_model": "bottleneck", "reconstruction_id": rid, "candidate_id": cid}
            rows.append({**base, "metric": "ssim", "value": v})
            if own:
                psnr = 20.0 if a < n_m else 15.0  # members reconstructed better
                rows.append({**base, "metric": "psnr", "value": psnr + r.normal(0, 0.1)})
    return rows, ids[n_m:]


def test_membership_summary_and_markdown():
    rows, holdout = _rows(6, 1)
    section = membership_summary(rows, holdout, n_boot=200)
    e = section["unet_skull-stripped_bottleneck"]
    assert (e["n_members"], e["n_nonmembers"]) == (6, 3)
    c = e["metrics"]["ssim"]
    assert (c["members"]["top1"], c["nonmembers"]["top1"]) == (6, 1)
    sig = {s["signal"]: s for s in e["membership_inference"]}
    assert sig["reconstruction_error"]["auc"] == 1.0  # members all have the higher PSNR
    text = "\n".join(membership_markdown(section))
    assert "| ssim | 6/6 | 1/3 |" in text and "Membership inference" in text
    (line,) = membership_plain(section)
    assert line.startswith(
        "- Who leaks (unet_skull-stripped_bottleneck): ssim: members identified 6/6"
    )
    assert membership_summary(rows, []) == {}


def _write_cohort(root, seeds, names=None):
    import nibabel as nib

    from conftest import make_blob_volume

    root.mkdir(parents=True, exist_ok=True)
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    affine[:3, 3] = -32
    for k, seed in enumerate(seeds):
        sid = names[k] if names else f"sub{seed:02d}"
        img, lab = make_blob_volume(seed=seed)
        nib.save(
            nib.Nifti1Image((img * 1000).astype(np.float32), affine), root / f"{sid}_T1.nii.gz"
        )
        nib.save(nib.Nifti1Image(lab.astype(np.uint8), affine), root / f"{sid}_seg.nii.gz")
    return root


def _study_config(cohort, **extra):
    return {
        "study": {"name": "holdout", "seed": 1, "device": "cpu", "threads": 1},
        "cohort": {"path": str(cohort), "n_subjects": 6, "holdout_n": 2},
        "folds": {"n_folds": 2, "seed": 0},
        "variants": ["skull-stripped"],
        "archs": ["unet"],
        "threat_models": ["bottleneck"],
        "preprocess": {"spacing": [2.0, 2.0, 2.0], "shape": [32, 32, 32], "divisible_by": 8},
        "target": {"depth": 2, "base_filters": 4, "epochs": 2, "batch_size": 1, "lr": 0.01},
        "inversion": {"epochs": 2, "batch_size": 1, "lr": 0.01},
        "matching": {"metrics": ["ssim", "psnr", "dice", "reid"], "top_k": 1},
        "reid": {
            "epochs": 2,
            "base_filters": 2,
            "embed_dim": 8,
            "patch_size": 16,
            "patch_stride": 4,
            "min_inside": 0.3,  # the blob brains are small on this 32^3 grid
        },
        **extra,
    }


@pytest.mark.slow
def test_holdout_is_reconstructed_scored_in_one_gallery_and_reported(tmp_path, monkeypatch):
    import json

    import inversion_audit.metrics as metrics
    from inversion_audit.report import run_and_report
    from inversion_audit.study.score_files import read_scores

    cohort = _write_cohort(tmp_path / "cohort", range(8))
    out = tmp_path / "study"
    unmasked: list[bool] = []  # a spy around the real SSIM matrix
    real = metrics.ssim_matrix

    def spy(*args, **kwargs):
        unmasked.append(kwargs.get("mask") is None)
        return real(*args, **kwargs)

    monkeypatch.setattr(metrics, "ssim_matrix", spy)
    run_and_report(study_config_from_dict(_study_config(cohort)), out)
    # one scoring call per fold's score stage, the re-identifier among its scorers:
    # the SSIM matrix is computed once per stage (2 folds), never again for reid
    assert sum(unmasked) == 2
    run = "unet_skull-stripped_bottleneck"
    holdout = json.loads((out / "holdout.json").read_text())
    assert holdout["holdout"] == ["sub06", "sub07"]
    assert sorted(holdout["fold_of"].values()) == [0, 1]  # one per fold
    for sid in ("sub06", "sub07"):
        assert (out / "reconstructions" / run / f"{sid}_recon_pre.nii.gz").is_file()
    rows = read_scores(out / "scores" / "scores.csv")
    ids = [f"sub{i:02d}" for i in range(8)]
    ssim = {(r["reconstruction_id"], r["candidate_id"]) for r in rows if r["metric"] == "ssim"}
    assert ssim == {(a, b) for a in ids for b in ids}  # every reconstruction vs one gallery
    assert {r["reconstruction_id"] for r in rows if r["metric"] == "reid"} == set(ids)
    for fold in (0, 1):
        assert (out / "checkpoints" / run / f"fold{fold}" / "reid.safetensors").is_file()
    report = json.loads((out / "report.json").read_text())
    # the paper's tables hold the members; the gallery holds everyone
    assert report["runs"][run]["table3"]["ssim"]["n"] == 6
    assert len(report["runs"][run]["table3"]["ssim"]["rank_histogram"]) == 8
    # Table 3's AUC and TPR@1% FPR: open-set verification over every (reconstruction,
    # candidate) pair of the run, the non-members' included (8 x 8 pairs), by sklearn
    table3 = report["tables"]["table3"]
    assert "non-members' reconstructions" in table3["note"]
    for metric in ("ssim", "psnr", "reid"):  # higher is better for each
        vals = {
            (r["reconstruction_id"], r["candidate_id"]): r["value"]
            for r in rows
            if r["metric"] == metric
        }
        auc, tpr = sklearn_verification(vals, True)
        (row,) = [r for r in table3["rows"] if r[:2] == [run, metric]]
        cells = dict(zip(table3["columns"], row, strict=True))
        assert float(cells["AUC"]) == pytest.approx(auc, abs=5e-4)
        assert float(cells["TPR@1% FPR"]) == pytest.approx(tpr, abs=5e-4)
        t = report["runs"][run]["table3"][metric]
        assert (t["auc"], t["tpr_at_1pct_fpr"]) == pytest.approx((auc, tpr), rel=1e-9)
        assert t["verification_pairs"] == {"same": 8, "different": 56}
    section = report["membership"][run]
    assert (section["n_members"], section["n_nonmembers"]) == (6, 2)
    assert {"ssim", "psnr", "reid"} <= set(section["metrics"])
    assert section["metrics"]["ssim"]["nonmembers"]["n"] == 2
    signals = {s["signal"] for s in section["membership_inference"]}
    assert signals == {"reconstruction_error", "segmentation_loss", "combined"}
    md = (out / "report.md").read_text()
    assert "## Who leaks: members vs non-members" in md and "Inconclusive" in md
    assert any(line.startswith("Who leaks") for line in report["summary_text"])
    # retraining the re-identifier alone reuses the fold's cross-fitted reconstructions
    fold0 = out / "checkpoints" / run / "fold0"
    (crossfit,) = fold0.glob("crossfit-*.npz")
    before = (crossfit.stat().st_mtime_ns, (fold0 / "reid.safetensors").read_bytes())
    config = _study_config(cohort)
    config["reid"]["epochs"] = 3
    run_and_report(study_config_from_dict(config), out)
    assert crossfit.stat().st_mtime_ns == before[0]
    assert (fold0 / "reid.safetensors").read_bytes() != before[1]


def test_guard_fails_loudly_when_a_holdout_id_is_in_the_attack_set(tmp_path):
    from inversion_audit.study.runner import run_study

    cohort = _write_cohort(tmp_path / "cohort", range(8))
    attack = _write_cohort(tmp_path / "attack", [7, 8, 9], ["sub07", "atk08", "atk09"])
    cfg = _study_config(cohort, matching={"metrics": ["ssim"], "top_k": 1})
    cfg["cohort"] = {"path": str(cohort), "n_subjects": 6, "holdout": ["sub07"]}
    cfg["cohort"]["attack_path"] = str(attack)
    with pytest.raises(CohortError, match="holdout subject 'sub07' is in the fold 0 attack set"):
        run_study(study_config_from_dict(cfg), tmp_path / "study")
    assert not (tmp_path / "study" / "checkpoints").exists()  # nothing trained
