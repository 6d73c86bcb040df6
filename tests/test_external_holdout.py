"""A non-member holdout in a ``[model]`` study (issue 18 item 1 for external models, issue 17)."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from inversion_audit.io import ids_hash
from test_external_models import TINY, external_study_toml, save_monai

MEMBERS = ["sub-000", "sub-002"]
#: sample_n 6, the protocol the first 4 (members + attack set), the other 2 the holdout
HOLDOUT = ["sub-004", "sub-005"]
ATTACK = ["sub-001", "sub-003"]


def run_holdout_study(tmp_path, members: list[str]) -> tuple[int, object]:
    """The CLI's ``run`` on a tiny BasicUNet audit with ``holdout_n = 2``: (exit code, study)."""
    from inversion_audit.cli.main import main

    save_monai(tmp_path, "BasicUNet", TINY["BasicUNet"])
    text = external_study_toml(tmp_path, members)
    text = text.replace("sample_n = 4", "sample_n = 6\nn_subjects = 4\nholdout_n = 2")
    config = tmp_path / "audit.toml"
    config.write_text(text.replace('["ssim", "correlation"]', '["ssim", "correlation", "psnr"]'))
    out = tmp_path / "study"
    return main(["run", str(config), "--out", str(out), "--quiet"]), out


def _rank_of_own(rows: list[dict], metric: str, rec: str) -> int:
    """1-based rank of the own original among the candidates (higher score is better)."""
    scores = {r["candidate_id"]: float(r["value"]) for r in rows if r["metric"] == metric}
    order = sorted(scores, key=lambda c: -scores[c])
    return order.index(rec) + 1


@pytest.mark.slow
def test_model_study_reconstructs_and_ranks_its_holdout(tmp_path):
    rc, out = run_holdout_study(tmp_path, MEMBERS)
    assert rc == 0

    run = "external_skull-stripped_bottleneck"
    for sid in HOLDOUT:  # reconstructed by the run's decoder, on both grids
        assert (out / "reconstructions" / run / f"{sid}_recon_pre.nii.gz").is_file()
        assert (out / "reconstructions" / run / f"{sid}_recon.nii.gz").is_file()
    holdout = json.loads((out / "holdout.json").read_text())
    assert holdout == {"holdout": HOLDOUT, "fold_of": {s: 0 for s in HOLDOUT}}
    # the decoder trained on the attack set only: no holdout id, no member
    meta = json.loads(next((out / "checkpoints").rglob("inversion.json")).read_text())
    assert meta["n_train"] == 2 and meta["train_ids_hash"] == ids_hash(ATTACK)

    with open(out / "scores" / "scores.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    ssim = [r for r in rows if r["metric"] == "ssim"]
    everyone = sorted(MEMBERS + ATTACK + HOLDOUT)
    # one gallery: every reconstruction, member or not, scored against all six candidates
    assert sorted({r["reconstruction_id"] for r in ssim}) == sorted(MEMBERS + HOLDOUT)
    for rec in MEMBERS + HOLDOUT:
        assert sorted(r["candidate_id"] for r in ssim if r["reconstruction_id"] == rec) == everyone

    report = json.loads((out / "report.json").read_text())
    section = report["membership"][run]
    assert section["n_members"] == 2 and section["n_nonmembers"] == 2
    # the members vs non-members figures agree with ranks computed here from scores.csv
    for group, ids in (("members", MEMBERS), ("nonmembers", HOLDOUT)):
        ranks = [
            _rank_of_own([r for r in ssim if r["reconstruction_id"] == i], "ssim", i) for i in ids
        ]
        figures = section["metrics"]["ssim"][group]
        assert figures["n"] == len(ids)
        assert figures["top1"] == sum(k == 1 for k in ranks)
        assert figures["mean_rank"] == pytest.approx(np.mean(ranks))
    assert "reconstruction_error" in {s["signal"] for s in section["membership_inference"]}
    report_md = (out / "report.md").read_text()
    assert "Who leaks: members vs non-members" in report_md
    assert "2 non-members (the holdout" in report_md


@pytest.mark.slow
def test_holdout_id_among_the_models_members_is_refused(tmp_path, capsys):
    rc, out = run_holdout_study(tmp_path, ["sub-000", "sub-005"])
    assert rc != 0
    err = capsys.readouterr().err
    assert "audit.toml" in err and "model.members" in err and "cohort.holdout_n" in err
    assert "'sub-005'" in err
    assert not (out / "checkpoints").exists()  # refused before anything trained
