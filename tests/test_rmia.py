"""Membership inference with reference models: offline RMIA and LiRA, the other fold targets
as reference models (Zarifzadeh et al., ICML 2024; Carlini et al., IEEE S&P 2022)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from inversion_audit.report.membership import (
    REFERENCE_KEY,
    membership_markdown,
    membership_plain,
    membership_summary,
)
from inversion_audit.study.index import StudyIndex
from inversion_audit.study.layout import StudyPaths
from inversion_audit.study.rmia import reference_attacks, reference_scores


def _records(log_likelihood, folds, holdout, dice=None, arch="unet", variant="skull-stripped"):
    """Record-loss records as the stage writes them: ``log_likelihood[t][sid]`` per target
    ``t`` (fold ``t``), ``folds[t]`` its members."""
    out = []
    for t, members in enumerate(folds):
        signals = {
            sid: {"log_likelihood": ll, "dice": (dice or {}).get((t, sid))}
            for sid, ll in log_likelihood[t].items()
        }
        out.append(
            {
                "arch": arch,
                "variant": variant,
                "fold": t,
                "signal": "log_likelihood",
                "members": list(members),
                "holdout": list(holdout),
                "signals": signals,
            }
        )
    return out


def _synthetic(rng, k=4, per_fold=3, n_holdout=4, advantage=0.0, spread=1.0, centre=0.0):
    """``k`` folds of ``per_fold`` subjects and a holdout; each record's logit confidence is
    its difficulty (``centre``, spread ``spread``) plus noise, plus ``advantage`` under its own
    target."""
    folds = [[f"s{f}{i}" for i in range(per_fold)] for f in range(k)]
    holdout = [f"h{i}" for i in range(n_holdout)]
    ids = [s for f in folds for s in f] + holdout
    difficulty = {sid: centre + rng.normal(0.0, spread) for sid in ids}
    ll = []
    for t in range(k):
        logit = {
            sid: difficulty[sid] + rng.normal(0, 0.3) + (advantage if sid in folds[t] else 0.0)
            for sid in ids
        }
        ll.append({sid: -math.log1p(math.exp(-v)) for sid, v in logit.items()})
    return ll, folds, holdout


def _independent(ll, folds, holdout, a=0.3, gamma=1.0):
    """RMIA and LiRA per (fold, subject), written out from the papers' formulas."""
    k = len(folds)
    p = [{sid: math.exp(v) for sid, v in ll[t].items()} for t in range(k)]
    phi = [{sid: math.log(q / (1 - q)) for sid, q in p[t].items()} for t in range(k)]
    rmia, lira = {}, {}
    for t in range(k):
        refs = {sid: [s for s in range(k) if s != t and sid not in folds[s]] for sid in ll[t]}
        kept = [sid for sid in ll[t] if refs[sid]]
        ratio = {}
        for sid in kept:
            p_out = sum(p[s][sid] for s in refs[sid]) / len(refs[sid])
            ratio[sid] = p[t][sid] / (0.5 * ((1 + a) * p_out + (1 - a)))
        population = [sid for sid in kept if sid not in folds[t]]
        for sid in kept:
            z = [ratio[sid] / ratio[o] > gamma for o in population if o != sid]
            rmia[(t, sid)] = sum(z) / len(z)
        two = [sid for sid in kept if len(refs[sid]) >= 2]
        mu = {sid: np.mean([phi[s][sid] for s in refs[sid]]) for sid in two}
        ss = sum((phi[s][sid] - mu[sid]) ** 2 for sid in two for s in refs[sid])
        dof = sum(len(refs[sid]) - 1 for sid in two)
        for sid in two:
            lira[(t, sid)] = (phi[t][sid] - mu[sid]) / math.sqrt(ss / dof)
    return rmia, lira


def test_rmia_and_lira_match_an_independent_computation_from_saved_losses(tmp_path):
    rng = np.random.default_rng(3)
    ll, folds, holdout = _synthetic(rng, advantage=0.5)
    paths = StudyPaths(tmp_path)
    for rec in _records(ll, folds, holdout):
        path = paths.record_losses(rec["arch"], rec["variant"], rec["fold"])
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(rec))
    saved = StudyIndex(tmp_path).record_losses()
    assert [r["fold"] for r in saved] == [0, 1, 2, 3]
    s = reference_scores(saved)
    want_rmia, want_lira = _independent(ll, folds, holdout)
    got = {(int(f), str(sid)): k for k, (f, sid) in enumerate(zip(s.fold, s.subject, strict=True))}
    assert set(got) == set(want_rmia)  # every record with an OUT reference: here all of them
    for key, k in got.items():
        assert s.rmia[k] == pytest.approx(want_rmia[key], abs=1e-12)
        assert s.lira[k] == pytest.approx(want_lira[key], rel=1e-9)
        assert s.member[k] == (key[1] in folds[key[0]])
        assert s.n_references[k] == (3 if s.member[k] or key[1] in holdout else 2)
    # the pooled AUCs are the rank statistic sklearn computes on the same scores
    section = reference_attacks(saved, n_boot=50)["unet_skull-stripped"]
    by = {a["attack"]: a for a in section["attacks"]}
    for label, scores in (("RMIA (offline)", s.rmia), ("LiRA (offline)", s.lira)):
        assert by[label]["auc"] == pytest.approx(roc_auc_score(s.member, scores))
    loss = by["loss threshold (cross-entropy)"]
    assert loss["auc"] == pytest.approx(roc_auc_score(s.member, s.log_likelihood))
    # 4 folds x 3 members; non-members: 4 x (9 other-fold subjects + 4 holdout)
    assert (section["n_members"], section["n_nonmembers"]) == (12, 52)
    assert section["n_holdout_records"] == 16 and section["n_references"] == [2, 3]
    assert "TPR at 0.1% FPR at least 1000 non-members; this study has 52" in (section["resolution"])


def test_other_fold_subjects_without_an_out_reference_are_left_out():
    # two folds: another fold's subject trained the only other target, so it has no OUT
    # reference; members and the holdout have one (RMIA), never two (no LiRA)
    rng = np.random.default_rng(0)
    ll, folds, holdout = _synthetic(rng, k=2, per_fold=3, n_holdout=2)
    s = reference_scores(_records(ll, folds, holdout))
    assert set(s.subject[~s.member]) == set(holdout)
    assert len(s.subject) == 2 * (3 + 2) and np.isnan(s.lira).all()
    assert np.isfinite(s.rmia).all()
    # a single target has no reference model: nothing to report
    assert reference_attacks(_records(ll[:1], folds[:1], holdout)) == {}


def test_rmia_beats_the_loss_threshold_when_the_target_memorises_records_of_unequal_difficulty():
    """Each target fits its members a little better than models that never saw them, but
    records differ far more in difficulty: raw losses of members and non-members overlap, the
    reference models calibrate the difficulty away."""
    rng = np.random.default_rng(0)
    # true-label probabilities from about 0.3 to 0.99, as a segmentation's geometric mean is
    ll, folds, holdout = _synthetic(
        rng, k=4, per_fold=10, n_holdout=20, advantage=1.0, spread=1.5, centre=1.0
    )
    section = reference_attacks(_records(ll, folds, holdout), n_boot=200)["unet_skull-stripped"]
    by = {a["attack"]: a for a in section["attacks"]}
    rmia, lira = by["RMIA (offline)"], by["LiRA (offline)"]
    loss = by["loss threshold (cross-entropy)"]
    assert loss["auc"] < 0.75
    assert rmia["auc"] > 0.85 and rmia["auc"] > loss["auc"] + 0.15
    assert lira["auc"] > loss["auc"] + 0.15
    assert rmia["auc_interval"][0] > loss["auc_interval"][1]  # not an accident of the sample
    # RMIA's score moves in steps of 1/|Z| (50 non-members per target, less itself): the report
    # says so beside its low-FPR figures
    assert section["n_population"] == 49 and "|Z| = 49 population records" in section["resolution"]


def test_report_rows_and_json_of_reference_models():
    rng = np.random.default_rng(1)
    ll, folds, holdout = _synthetic(rng, advantage=2.0)
    dice = {(t, sid): 0.5 for t in range(4) for sid in ll[t]}
    section = membership_summary(
        [], [], n_boot=50, record_losses=_records(ll, folds, holdout, dice)
    )
    assert list(section) == [REFERENCE_KEY]  # no holdout reconstructions: the runs are absent
    entry = section[REFERENCE_KEY]["unet_skull-stripped"]
    assert [a["attack"] for a in entry["attacks"]] == [
        "RMIA (offline)",
        "LiRA (offline)",
        "loss threshold (cross-entropy)",
        "loss threshold (1 - Dice)",
    ]
    assert entry["attacks"][3]["auc"] == 0.5  # equal Dice everywhere: a coin
    json.dumps(entry)  # JSON-safe
    text = "\n".join(membership_markdown(section))
    assert "## Membership inference with reference models (RMIA)" in text
    assert "## Who leaks" not in text
    assert "| RMIA (offline) | 12 / 52 |" in text and "| LiRA (offline) | 12 / 52 |" in text
    assert "TPR at 0.1% FPR at least 1000 non-members; this study has 52" in text
    (line,) = membership_plain(section)
    assert line.startswith("- Membership inference with reference models (unet skull-stripped)")
    assert membership_summary([], [], record_losses=[]) == {}


def test_damaged_or_malformed_records_are_left_out(tmp_path):
    paths = StudyPaths(tmp_path)
    assert StudyIndex(tmp_path).record_losses() == []
    good = _records([{"a": -0.1}], [["a"]], [])[0]
    bad = dict(good, fold="0")
    for fold, text in ((0, json.dumps(good)), (1, json.dumps(bad)), (2, "{not json")):
        path = paths.record_losses("unet", "skull-stripped", fold)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert StudyIndex(tmp_path).record_losses() == [good]


def test_record_signals_is_the_mean_log_probability_of_the_true_labels_inside_the_mask():
    import torch

    from inversion_audit.study.record_losses import record_signals

    class Fixed(torch.nn.Module):  # class 1 where the image is bright, with fixed logits
        def __init__(self) -> None:
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))

        def forward(self, x):
            bright = (x > 0.5).float()
            return torch.cat([1.0 - 2.0 * bright, 2.0 * bright], dim=1) + 0 * self.w

    image = np.zeros((8, 8, 8), np.float32)
    image[2:6, 2:6, 2:6] = 1.0
    labels = np.zeros((8, 8, 8), np.int16)
    labels[2:6, 2:6, 3:6] = 7  # one slab of the bright cube is labelled background
    mask = np.zeros((8, 8, 8), bool)
    mask[1:7, 1:7, 1:7] = True
    out = record_signals(Fixed(), image, labels, mask, {7: 1}, "cpu")
    logits = np.stack([1.0 - 2.0 * (image > 0.5), 2.0 * (image > 0.5)])
    logp = logits - np.log(np.exp(logits).sum(axis=0))
    truth = (labels > 0).astype(int)
    want = np.take_along_axis(logp, truth[None], 0)[0][mask].mean()
    assert out["log_likelihood"] == pytest.approx(want, rel=1e-6)
    assert out["dice"] == pytest.approx(2 * 48 / (64 + 48))


@pytest.mark.slow
def test_a_study_with_a_holdout_records_losses_and_reports_rmia(tmp_path):
    from conftest import runner_study_config, write_blob_cohort
    from inversion_audit.report import run_and_report
    from inversion_audit.study.config import study_config_from_dict
    from inversion_audit.study.runner import plan_study

    cohort = write_blob_cohort(tmp_path / "cohort", {f"sub{i:02d}": i for i in range(8)})
    config = runner_study_config(cohort)
    config["cohort"].update(n_subjects=6, holdout_n=2)
    config["folds"]["n_folds"] = 3
    config["archs"] = ["unet"]
    config["matching"] = {"metrics": ["ssim", "psnr", "dice"], "top_k": 1}
    out = tmp_path / "study"
    run_and_report(study_config_from_dict(config), out)
    paths = StudyPaths(out)
    for fold in range(3):
        rec = json.loads(paths.record_losses("unet", "skull-stripped", fold).read_text())
        assert set(rec["signals"]) == {f"sub{i:02d}" for i in range(8)}  # every subject
        assert rec["holdout"] == ["sub06", "sub07"] and len(rec["members"]) == 2
        assert all(v["log_likelihood"] < 0 for v in rec["signals"].values())
    names = [n for n, done in plan_study(study_config_from_dict(config), out) if done]
    assert "fold2/unet_skull-stripped/record-losses" in names  # a stage, resumable
    report = json.loads((out / "report.json").read_text())
    entry = report["membership"][REFERENCE_KEY]["unet_skull-stripped"]
    # members: 3 folds x 2 (2 reference models each, as the holdout has); non-members per
    # target: the 2 holdout subjects and the 4 other folds' subjects (1 reference model each)
    assert (entry["n_members"], entry["n_nonmembers"]) == (6, 3 * (2 + 4))
    assert entry["n_references"] == [1, 2]
    md = (out / "report.md").read_text()
    assert "## Membership inference with reference models (RMIA)" in md
    assert "| RMIA (offline) | 6 / 18 |" in md and "| LiRA (offline) | 6 / 6 |" in md


def test_the_bootstrap_is_membership_inferences():
    from inversion_audit.study.membership_inference import bootstrap_roc, membership_inference

    rng = np.random.default_rng(2)
    pos, neg = rng.normal(1, 1, 15), rng.normal(0, 1, 30)
    (res,) = membership_inference({"s": (pos, neg)}, n_boot=100, combine=False)
    auc, (t1, t10) = bootstrap_roc(pos, neg, (0.01, 0.10), n_boot=100, seed=0)
    assert (res.auc_interval, res.tpr_at_1pct_interval, res.tpr_at_10pct_interval) == (
        auc,
        t1,
        t10,
    )
