"""A non-member holdout in a ``[model]`` study (issue 18 item 1 for external models, issue 17)."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from inversion_audit.io import ids_hash
from test_external_models import TINY, external_study_toml, save_monai, write_nnunet

MEMBERS = ["sub-000", "sub-002"]
#: sample_n 6, the protocol the first 4 (members + attack set), the other 2 the holdout
HOLDOUT = ["sub-004", "sub-005"]
ATTACK = ["sub-001", "sub-003"]


def run_holdout_study(
    tmp_path, members: list[str], metrics: str = '"psnr"', extra: str = ""
) -> tuple[int, object]:
    """The CLI's ``run`` on a tiny BasicUNet audit with ``holdout_n = 2``: (exit code, study).

    ``metrics`` are added to ssim and correlation; ``extra`` is appended to the config."""
    from inversion_audit.cli.main import main

    save_monai(tmp_path, "BasicUNet", TINY["BasicUNet"])
    text = external_study_toml(tmp_path, members)
    text = text.replace("sample_n = 4", "sample_n = 6\nn_subjects = 4\nholdout_n = 2")
    config = tmp_path / "audit.toml"
    config.write_text(text.replace('"correlation"]', f'"correlation", {metrics}]') + extra)
    out = tmp_path / "study"
    return main(["run", str(config), "--out", str(out), "--quiet"]), out


def _dice_here(net, image_path, labels_path) -> float:
    """Dice of ``net``'s class-1 segmentation vs all nonzero labels, as sklearn's F1."""
    import nibabel as nib
    import torch
    from sklearn.metrics import f1_score

    image = np.asarray(nib.load(image_path).dataobj, dtype=np.float32)
    truth = np.asarray(nib.load(labels_path).dataobj) > 0
    with torch.no_grad():
        pred = net(torch.from_numpy(image)[None, None]).argmax(1)[0].numpy() == 1
    return float(f1_score(truth.ravel(), pred.ravel()))


def _rank_of_own(rows: list[dict], metric: str, rec: str) -> int:
    """1-based rank of the own original among the candidates (higher score is better)."""
    scores = {r["candidate_id"]: float(r["value"]) for r in rows if r["metric"] == metric}
    order = sorted(scores, key=lambda c: -scores[c])
    return order.index(rec) + 1


@pytest.mark.slow
def test_model_study_reconstructs_and_ranks_its_holdout(tmp_path):
    # all nonzero sample labels in one group: background + 1 class, the model's 2 outputs
    target = '\n[target]\nlabel_map = [["1-9"]]\n'
    rc, out = run_holdout_study(tmp_path, MEMBERS, '"psnr", "dice"', target)
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
    signals = {s["signal"] for s in section["membership_inference"]}
    assert {"reconstruction_error", "segmentation_loss"} <= signals  # 1 - Dice needs Dice
    report_md = (out / "report.md").read_text()
    assert "Who leaks: members vs non-members" in report_md
    assert "2 non-members (the holdout" in report_md
    assert "Dice: the model's own segmentation (2 classes)" in report_md

    # the model's own Dice on members and holdout, against the MONAI network run here
    from monai.networks.nets import BasicUNet
    from safetensors.torch import load_model

    net = BasicUNet(**TINY["BasicUNet"]).eval()
    load_model(net, str(tmp_path / "BasicUNet.safetensors"))
    pre = out / "preprocessed" / "skull-stripped"
    dice = {(r["reconstruction_id"], r["metric"]): float(r["value"]) for r in rows}
    for sid in (MEMBERS[0], HOLDOUT[0]):
        labels = pre / f"{sid}_seg.nii.gz"
        original = _dice_here(net, pre / f"{sid}.nii.gz", labels)
        recon = _dice_here(net, out / "reconstructions" / run / f"{sid}_recon_pre.nii.gz", labels)
        assert dice[(sid, "dice_original")] == pytest.approx(original, abs=1e-4)
        assert dice[(sid, "dice_reconstruction")] == pytest.approx(recon, abs=1e-4)


@pytest.mark.slow
def test_holdout_id_among_the_models_members_is_refused(tmp_path, capsys):
    rc, out = run_holdout_study(tmp_path, ["sub-000", "sub-005"])
    assert rc != 0
    err = capsys.readouterr().err
    assert "audit.toml" in err and "model.members" in err and "cohort.holdout_n" in err
    assert "'sub-005'" in err
    assert not (out / "checkpoints").exists()  # refused before anything trained


@pytest.mark.slow
def test_model_whose_classes_differ_from_the_label_map_has_no_dice(tmp_path):
    # no label map: the sample's labels 0..9 are 10 classes, the model gives 2
    rc, out = run_holdout_study(tmp_path, MEMBERS, '"dice"')
    assert rc == 0
    with open(out / "scores" / "scores.csv", newline="") as fh:
        metrics = {r["metric"] for r in csv.DictReader(fh)}
    assert "ssim" in metrics and not any(m.startswith("dice") for m in metrics)
    record = json.loads((out / "external_model.json").read_text())
    note = record["skull-stripped"]["dice"]
    assert note.startswith("not comparable") and "2 classes" in note and "10" in note
    assert f"Dice: {note}" in (out / "report.md").read_text()


@pytest.mark.slow
def test_nnunet_model_dice_on_the_projects_axes(tmp_path):
    """nnU-Net's network reads (z, y, x): its own segmentation is scored back on (x, y, z)."""
    import nibabel as nib
    import torch
    from sklearn.metrics import f1_score

    from inversion_audit.cli.main import main

    root, net = write_nnunet(tmp_path)  # 3 classes: background, csf, gm
    (tmp_path / "splits_final.json").write_text(json.dumps([{"train": MEMBERS, "val": []}]))
    text = external_study_toml(tmp_path, ["x"])
    text = text[: text.index("[model]")].replace(
        "sample_n = 4", "sample_n = 6\nn_subjects = 4\nholdout_n = 2"
    )
    config = tmp_path / "audit.toml"
    config.write_text(
        text.replace('"correlation"]', '"correlation", "dice"]')
        + f'[model]\nsource = "nnunet"\npath = "{root.name}"\nfold = 0\n'
        'members_file = "splits_final.json"\n\n[target]\nlabel_map = [["1"], ["2-9"]]\n'
    )
    out = tmp_path / "study"
    assert main(["run", str(config), "--out", str(out), "--quiet"]) == 0
    with open(out / "scores" / "scores.csv", newline="") as fh:
        dice = {
            r["reconstruction_id"]: float(r["value"])
            for r in csv.DictReader(fh)
            if r["metric"] == "dice_original"
        }
    assert sorted(dice) == sorted(MEMBERS + HOLDOUT)
    pre = out / "preprocessed" / "skull-stripped"
    net.eval()
    for sid in (MEMBERS[0], HOLDOUT[0]):
        image = np.asarray(nib.load(pre / f"{sid}.nii.gz").dataobj, dtype=np.float64)
        labels = np.asarray(nib.load(pre / f"{sid}_seg.nii.gz").dataobj)
        truth = np.where(labels >= 2, 2, labels)
        inside = image != 0  # nnU-Net's z-score inside the nonzero region, 0 outside
        z = np.where(inside, (image - image[inside].mean()) / image[inside].std(), 0.0)
        x = torch.from_numpy(z.transpose(2, 1, 0).astype(np.float32))[None, None]
        with torch.no_grad():
            pred = net(x).argmax(1)[0].numpy().transpose(2, 1, 0)
        here = f1_score(truth.ravel(), pred.ravel(), labels=[1, 2], average="macro")
        assert dice[sid] == pytest.approx(here, abs=2e-3)
