"""Study runner: a separate attack cohort, provenance across resumptions, stale maps."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import runner_study_config, write_blob_cohort
from inversion_audit.study.config import study_config_from_dict
from inversion_audit.study.provenance import Provenance
from inversion_audit.study.runner import run_study


def _write_cohort(root, seeds: dict[str, int]):
    return write_blob_cohort(root, seeds)


def _config(private, attack) -> dict:
    cfg = runner_study_config(private)
    cfg["study"]["name"] = "attack-cohort"
    cfg["cohort"]["attack_path"] = str(attack)
    cfg["archs"] = ["unet"]
    cfg["matching"] = {"metrics": ["ssim", "correlation"], "top_k": 1}
    return cfg


@pytest.mark.slow
def test_separate_attack_cohort_resume_and_provenance(tmp_path, monkeypatch):
    import inversion_audit.attack as attack_pkg
    import inversion_audit.study.context as context_mod
    import inversion_audit.study.scoring as scoring_mod
    from inversion_audit.attack.inversion import train_inversion
    from inversion_audit.attack.reconstruction import reconstruct

    ids = ["sub00", "sub01", "sub02", "sub03"]
    private = _write_cohort(tmp_path / "private", {sid: k for k, sid in enumerate(ids)})
    # the attacker's subjects reuse private ids but are other images
    attack = _write_cohort(tmp_path / "attack", {sid: 10 + k for k, sid in enumerate(ids[:3])})

    source: dict[int, str] = {}  # id(preprocessed image) -> the cohort folder it came from
    real_pre = context_mod.preprocess_subject

    def pre(subject, config):
        out = real_pre(subject, config)
        source[id(out.image)] = subject.image.parent.name
        return out

    used: dict[str, list[str]] = {"inversion": [], "reconstruct": [], "candidates": []}

    def train(target, images, *args, **kwargs):
        used["inversion"] += [source[id(img)] for img in images]
        return train_inversion(target, images, *args, **kwargs)

    def recon(target, decoder, image, *args, **kwargs):
        used["reconstruct"].append(source[id(image)])
        return reconstruct(target, decoder, image, *args, **kwargs)

    real_score = scoring_mod.score_fold

    def score(recs, cands, *args, **kwargs):
        used["candidates"] += [source[id(p.image)] for p in cands.values()]
        return real_score(recs, cands, *args, **kwargs)

    monkeypatch.setattr(context_mod, "preprocess_subject", pre)
    monkeypatch.setattr(attack_pkg, "train_inversion", train, raising=False)
    monkeypatch.setattr(attack_pkg, "reconstruct", recon, raising=False)
    monkeypatch.setattr(scoring_mod, "score_fold", score)

    out = tmp_path / "study"
    run = "unet_skull-stripped_bottleneck"
    stale = out / "deformation" / run / "sub00__sub03_magnitude.nii.gz"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"a map of a superseded run")
    cfg = study_config_from_dict(_config(private, attack))
    run_study(cfg, out)

    # the decoders trained on the 3 attack images; private subjects came from the private cohort
    assert used["inversion"] == ["attack"] * 6  # 3 attack subjects x 2 folds
    assert set(used["reconstruct"]) == {"private"} and len(used["reconstruct"]) == 4
    assert set(used["candidates"]) == {"private"} and len(used["candidates"]) == 8
    for fold in (0, 1):
        side = json.loads(
            (out / "checkpoints" / run / f"fold{fold}" / "inversion.json").read_text()
        )
        assert side["n_train"] == 3
    assert not stale.exists()

    prov = json.loads((out / "provenance.json").read_text())
    assert prov["inputs"]["attack_cohort"] == str(attack)
    assert set(prov["inputs"]["attack_files"]) == set(ids[:3])
    assert (
        prov["inputs"]["attack_files"]["sub00"]["image"]
        != prov["inputs"]["files"]["sub00"]["image"]
    )
    assert prov["resumed_stages"] == []
    assert [i["status"] for i in prov["invocations"]] == ["finished"]

    # a changed attack image re-trains the decoders only; the resumed run keeps the first start
    import nibabel as nib

    old = nib.load(attack / "sub01_T1.nii.gz")
    nib.save(nib.Nifti1Image(np.asarray(old.dataobj) * 0.5, old.affine), old.get_filename())
    used["inversion"].clear()
    run_study(cfg, out)
    again = json.loads((out / "provenance.json").read_text())
    assert used["inversion"] == ["attack"] * 6
    assert again["resumed_stages"] == [
        "preprocess/skull-stripped",
        "fold0/unet_skull-stripped/target",
        "fold1/unet_skull-stripped/target",
    ]
    assert again["started"] == prov["started"]
    assert len(again["invocations"]) == 2
    assert again["invocations"][0] == prov["invocations"][0]
    assert again["total_stage_seconds"] == pytest.approx(
        sum(again["stage_seconds"].values()), abs=0.01
    )
    assert again["inputs"]["attack_files"]["sub01"] != prov["inputs"]["attack_files"]["sub01"]


def test_provenance_merge_keeps_the_first_start():
    legacy = {"started": "2026-01-01T00:00:00", "finished": None, "device": "cpu", "versions": {}}
    prov = Provenance({}, "cuda")
    prov.merge_previous(legacy)
    prov.finish()
    data = prov.to_dict({"a": 1.25, "b": 2.0}, ["a"])
    assert data["started"] == "2026-01-01T00:00:00"
    assert [i["device"] for i in data["invocations"]] == ["cpu", "cuda"]
    assert data["invocations"][0]["status"] == "unknown"
    assert data["invocations"][1]["status"] == "finished" and data["finished"]
    assert data["total_stage_seconds"] == 3.25 and data["resumed_stages"] == ["a"]

    later = Provenance({}, "cpu")
    later.merge_previous(json.loads(json.dumps(data)))
    later.finish("cancelled")
    again = later.to_dict({})
    assert again["started"] == "2026-01-01T00:00:00"
    assert [i["status"] for i in again["invocations"]] == ["unknown", "finished", "cancelled"]
    assert again["finished"] is None


def test_remaining_time_is_estimated_from_the_same_stage_or_kind():
    from inversion_audit.study.stages import estimate_seconds

    plan = [
        ("preprocess/skull-stripped", True),
        ("fold0/unet_skull-stripped/target", True),
        ("fold0/unet_skull-stripped_bottleneck/inversion", True),
        ("fold1/unet_skull-stripped/target", True),
        ("fold2/unet_skull-stripped/target", False),
        ("fold2/segnet_skull-stripped/target", False),
        ("fold0/unet_skull-stripped_bottleneck_latent-noise-1/inversion", False),
        ("fold0/unet_skull-stripped_obfuscation/vae", False),
        ("report", False),
    ]
    timings = {
        "preprocess/skull-stripped": 50.0,
        "fold0/unet_skull-stripped/target": 100.0,
        "fold0/unet_skull-stripped_bottleneck/inversion": 300.0,
        "fold1/unet_skull-stripped/target": 400.0,
    }
    assert estimate_seconds(plan, timings) == [
        ("preprocess/skull-stripped", True, 50.0),
        ("fold0/unet_skull-stripped/target", True, 100.0),
        ("fold0/unet_skull-stripped_bottleneck/inversion", True, 300.0),
        ("fold1/unet_skull-stripped/target", True, 400.0),
        ("fold2/unet_skull-stripped/target", False, 250.0),  # the median of folds 0 and 1
        ("fold2/segnet_skull-stripped/target", False, 250.0),  # no fold yet: every target
        # a defended run's stage: the same kind of stage in the other runs
        ("fold0/unet_skull-stripped_bottleneck_latent-noise-1/inversion", False, 300.0),
        ("fold0/unet_skull-stripped_obfuscation/vae", False, None),  # nothing of the kind
        ("report", False, None),
    ]
